-- Helpers shared by the examples (found through LuaPackagePath).
local M = {}

local html_escapes = { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- Escapes text for use in HTML.
function M.html(s)
    return (tostring(s):gsub("[<>&\"']", html_escapes))
end

--- Returns the keys of a table, sorted.
function M.sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    return keys
end

return M
