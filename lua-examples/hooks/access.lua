-- IP/token access checker (access_checker hook) for /admin/:
-- loopback clients pass; others need `X-Api-Token: <token>`.
local TOKEN = "s3cr3t-token"   -- in real life: read it from a file or the environment

function check(r)
    if not r.uri:match("^/admin/") then
        return apache2.DECLINED
    end
    if r.useragent_ip == "127.0.0.1" or r.useragent_ip == "::1" then
        return apache2.DECLINED          -- let the other access checks decide
    end
    if r.headers_in["X-Api-Token"] == TOKEN then
        return apache2.DECLINED
    end
    r:warn("admin access refused for " .. r.useragent_ip)
    return 403
end
