-- Wraps the request methods written as mlua functions. Those Rust functions never raise: on
-- failure they return FAIL and a finished message, and `check` raises it as a plain string
-- (as luaL_error does in mod_lua), so scripts that pcall and inspect errors see strings.
-- Returns the method table (to which the raw C methods of luac.rs are added, and the others as
-- they are first used) and `wrap`, which gives every such Rust function that treatment.
local FAIL = ...
local error, select = error, select

local function check(...)
  if ... == FAIL then
    error((select(2, ...)), 0)
  end
  return ...
end

local function wrap(f)
  return function(...) return check(f(...)) end
end

-- The methods table starts empty: request.rs makes each method on first use (through wrap).
return {}, wrap
