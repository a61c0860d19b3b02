-- An input filter that transforms the request body before the handler reads it: upper-cases
-- it and appends a signature field (mod_lua's manual example).
--
--   LuaInputFilter UPPERBODY /path/filters/body_upper.lua upper
--   <Location /upload.lua> SetInputFilter UPPERBODY </Location>
function upper(r)
    coroutine.yield()                  -- accept (an input filter's first yield carries nothing)
    while bucket do
        coroutine.yield(bucket:upper())
    end
    coroutine.yield("&filterSignature=1234")   -- after the last chunk
end
