-- Builds the metamethods of `r` and its tables in each VM. The Rust functions never raise:
-- on failure they return FAIL and a finished message, and `check` raises it as a plain string
-- (as luaL_error does in mod_lua), so scripts that pcall and inspect errors see strings.
local FAIL, rust_methods, getfield, setfield, tget, tset, tpairs = ...
local error, select, pairs = error, select, pairs

local function check(...)
  if ... == FAIL then
    error((select(2, ...)), 0)
  end
  return ...
end

local methods = {}
for name, f in pairs(rust_methods) do
  methods[name] = function(...) return check(f(...)) end
end

return {
  request_index = function(r, k)
    local m = methods[k]
    if m ~= nil then return m end
    return check(getfield(r, k))
  end,
  request_newindex = function(r, k, v) return check(setfield(r, k, v)) end,
  table_index = function(t, k) return check(tget(t, k)) end,
  table_newindex = function(t, k, v) return check(tset(t, k, v)) end,
  table_pairs = function(t) return check(tpairs(t)) end,
}
