-- Security headers on every response (fixups hook).
local HEADERS = {
    ["X-Content-Type-Options"] = "nosniff",
    ["X-Frame-Options"] = "DENY",
    ["Referrer-Policy"] = "no-referrer",
}

function add(r)
    for name, value in pairs(HEADERS) do
        r.err_headers_out[name] = value     -- err_headers_out: kept on error pages too
    end
    return apache2.DECLINED
end
