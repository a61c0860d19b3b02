-- Basic authentication against a file (check_user_id hook).
-- users.txt holds lines `name:sha1-hex-of-password`; make one with
--   printf 'alice:%s\n' "$(printf wonderland | sha1sum | cut -d' ' -f1)" >> users.txt
-- The users are read once per VM (use LuaScope thread or server to keep them).
local users
local function load_users(r)
    users = {}
    local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
    for line in io.lines(dir .. "users.txt") do
        local name, hash = line:match("^([^:]+):(%x+)$")
        if name then users[name] = hash:lower() end
    end
end

function authenticate(r)
    if not users then load_users(r) end
    local password = r.basic_auth_pw          -- also sets r.user from the Authorization header
    local user = r.user
    if user and users[user] and users[user] == r:sha1(password) then
        return apache2.OK                      -- r.user is the authenticated user
    end
    return 401                                 -- httpd answers with a Basic challenge
end
