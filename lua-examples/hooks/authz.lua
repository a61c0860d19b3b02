-- An authorization provider used by `Require`:
--   LuaAuthzProvider method-is /path/authz.lua method_is
--   Require method-is GET HEAD
-- Each Require line passes its own arguments after r.
function method_is(r, ...)
    for _, m in ipairs({ ... }) do
        if r.method == m then
            return apache2.AUTHZ_GRANTED
        end
    end
    return apache2.AUTHZ_DENIED
end
