-- A small JSON API routed with LuaMapHandler (see httpd-conf/lua-examples.conf):
--   GET /api/items        list    GET /api/items/2   show    GET /api/health | /api/time
-- Uses Debian's lua-cjson, a C module, through plain `require`.
local cjson = require "cjson"

local items = {
    { id = 1, name = "apple", price = 0.5 },
    { id = 2, name = "bread", price = 2.25 },
    { id = 3, name = "cheese", price = 7.0 },
}

local function send(r, status, value)
    r.status = status
    r.content_type = "application/json"
    r.headers_out["Cache-Control"] = "no-store"
    r:puts(cjson.encode(value), "\n")
    return apache2.OK
end

local function only_get(r)
    if r.method ~= "GET" and r.method ~= "HEAD" then
        r.headers_out["Allow"] = "GET, HEAD"
        return send(r, 405, { error = "method not allowed" })
    end
end

function list(r)
    return only_get(r) or send(r, 200, { items = items, count = #items })
end

function show(r)
    local blocked = only_get(r)
    if blocked then return blocked end
    local id = tonumber(r.uri:match("(%d+)$"))
    for _, item in ipairs(items) do
        if item.id == id then return send(r, 200, item) end
    end
    return send(r, 404, { error = "no item " .. tostring(id) })
end

function health(r)
    return send(r, 200, { status = "ok", server = apache2.version })
end

function time(r)
    return send(r, 200, { epoch = os.time(), iso = os.date("!%Y-%m-%dT%H:%M:%SZ") })
end
