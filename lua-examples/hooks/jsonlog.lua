-- One JSON line per request (log hook), to the file named by `SetEnv LUA_JSON_LOG /path`.
-- Returning OK keeps httpd's own access log; DONE would suppress it.
local function json_string(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c)
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

function log(r)
    local path = r.subprocess_env["LUA_JSON_LOG"]
    if not path then return apache2.OK end
    local line = string.format('{"time":%d,"method":%s,"uri":%s,"status":%d,"ip":%s,"user":%s}\n',
        os.time(), json_string(r.method), json_string(r.uri), r.status, json_string(r.useragent_ip),
        r.user and json_string(r.user) or "null")
    local f = io.open(path, "a")
    if f then
        f:write(line)
        f:close()
    end
    return apache2.OK
end
