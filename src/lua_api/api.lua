-- Wraps the request methods written as mlua functions. Those Rust functions never raise: on
-- failure they return FAIL and a finished message, and `check` raises it as a plain string
-- (as luaL_error does in mod_lua), so scripts that pcall and inspect errors see strings.
-- Returns the method table (to which the raw C methods of luac.rs are added) and `wrap`, which
-- gives any other such Rust function the same treatment.
local FAIL, rust_methods = ...
local error, select, pairs = error, select, pairs

local function check(...)
  if ... == FAIL then
    error((select(2, ...)), 0)
  end
  return ...
end

local function wrap(f)
  return function(...) return check(f(...)) end
end

local methods = {}
for name, f in pairs(rust_methods) do
  methods[name] = wrap(f)
end
return methods, wrap
