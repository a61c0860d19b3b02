-- mod_lua_rs VM prelude: runs once per Lua state with the real globals as _ENV and returns what
-- the Rust side builds scripts' environments from:
--   profile(path, cpath) -> a module profile (its own package.path/cpath and loaded table)
--   env_mt, pkg_mt, loaded_mt -> the metatables of environments, their package views and
--                               their loaded tables
--   require_in(pkg, name, env) -> what an environment's `require` (a C function) calls
--   copy_globals(env)          -> copies the real globals into a long-lived environment
-- Scripts run in environments whose misses fall through to the real globals, so a global set by
-- a script stays in its scope (one call, one request, or the VM's lifetime), never leaking into
-- another scope. Each environment has its own `package` view and `require`, so a script's
-- package.path edits stay in its scope and modules resolve along the script's own paths.

local base = _G
local package, setmetatable, type, error, tostring, next, rawget, rawset =
  package, setmetatable, type, error, tostring, next, rawget, rawset
local std_loaded = package.loaded
local searchers = package.searchers or package.loaders
local searchpath, loadlib, loadfile, concat = package.searchpath, package.loadlib, loadfile, table.concat
local gsub, find, sub, format = string.gsub, string.find, string.sub, string.format
local std_lua_searcher, std_c_searcher, std_croot_searcher = searchers[2], searchers[3], searchers[4]

-- Lua 5.4's searchers return their messages bare and require starts each with "\n\t";
-- 5.1-5.3's start their messages with it themselves (searchpath's too).
local sep = _VERSION == "Lua 5.4" and "\n\t" or ""
local lead = sep == "" and "\n\t" or ""

-- Level 4 is the environment's `require` (past this function, the searcher and require_in): a
-- C function, so the message gets no position, as from Lua's own searchers.
local function load_error(name, file, err)
  error(format("error loading module '%s' from file '%s':\n\t%s", name, file, tostring(err)), 4)
end

-- `env`: where the module runs (nil: the real globals). A per-call or per-request environment's
-- modules run in it: their globals go where the script's go and end with them, as in the VM of
-- its own mod_lua gives such a call.
local function lua_searcher(pkg, name, env)
  local file, err = searchpath(name, pkg.path)
  if not file then return err end
  -- (An explicit nil would become the chunk's _ENV: no third argument for the real globals.)
  local f, lerr
  if env then f, lerr = loadfile(file, "bt", env) else f, lerr = loadfile(file) end
  if not f then load_error(name, file, lerr) end
  return f, file
end

local function open_name(name)
  local mod = gsub(name, "%.", "_")
  local hy = find(mod, "-", 1, true)
  if hy then mod = sub(mod, hy + 1) end
  return "luaopen_" .. mod
end

local function c_searcher(pkg, name)
  local file, err = searchpath(name, pkg.cpath)
  if not file then return err end
  local f, lerr = loadlib(file, open_name(name))
  if not f then load_error(name, file, lerr) end
  return f, file
end

local function croot_searcher(pkg, name)
  local dot = find(name, ".", 1, true)
  if not dot then return nil end
  local file, err = searchpath(sub(name, 1, dot - 1), pkg.cpath)
  if not file then return err end
  local f = loadlib(file, open_name(name))
  if not f then return format("%sno module '%s' in file '%s'", lead, name, file) end
  return f, file
end

-- `name` is a string: the environment's `require` checked it.
local function require_in(pkg, name, env)
  local loaded = pkg.loaded
  local v = loaded[name]
  if v then return v end
  local msg = {}
  for i = 1, #searchers do
    local s = searchers[i]
    local loader, extra
    if s == std_lua_searcher then
      loader, extra = lua_searcher(pkg, name, env)
    elseif s == std_c_searcher then
      loader, extra = c_searcher(pkg, name)
    elseif s == std_croot_searcher then
      loader, extra = croot_searcher(pkg, name)
    else
      loader, extra = s(name)
    end
    if type(loader) == "function" then
      local res = loader(name, extra)
      if res ~= nil then
        loaded[name] = res
      elseif loaded[name] == nil then
        loaded[name] = true
      end
      return loaded[name], extra
    elseif type(loader) == "string" then
      msg[#msg + 1] = sep .. loader
    end
  end
  -- At the position of the script's call (level 3: past the environment's `require`).
  error(format("module '%s' not found:%s", name, concat(msg)), 3)
end

local profiles = {}
local loaded_mt = { __index = std_loaded }

local function profile(path, cpath)
  local key = path .. "\0" .. cpath
  local p = profiles[key]
  if not p then
    p = { path = path, cpath = cpath, loaded = setmetatable({}, loaded_mt) }
    profiles[key] = p
  end
  return p
end

local env_mt = { __index = base }
local pkg_mt = { __index = package }

-- Copies the real globals into `env`, keeping the keys it has of its own.
local function copy_globals(env)
  for k, v in next, base do
    if rawget(env, k) == nil then rawset(env, k, v) end
  end
end

-- Environments share one metatable until a script asks for its environment's (a strict-mode
-- module does): then that environment gets the globals copied in, where a `once` or `request`
-- one had none yet (so that the module's own __index, which replaces ours, still finds
-- `error`, `print`, …, as in a mod_lua VM), and a metatable of its own, so that changing it
-- changes no other script's environment.
do
  local getmetatable = getmetatable
  base.getmetatable = function(...)
    local mt = getmetatable(...)
    if mt == env_mt then
      local env = ...
      copy_globals(env)
      mt = { __index = base }
      setmetatable(env, mt)
    end
    return mt
  end
end

return profile, env_mt, pkg_mt, loaded_mt, require_in, copy_globals
