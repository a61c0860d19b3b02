-- An output filter that rewrites HTML on its way out: every http:// link becomes https://,
-- and a banner goes before the page (the first yield) and a comment after it (the last).
--
--   LuaOutputFilter HTMLREWRITE /path/filters/html_rewrite.lua rewrite
--   SetOutputFilter HTMLREWRITE;DEFLATE
--
-- Chunks arrive in `bucket`; a pattern can straddle two chunks, so keep the tail of each chunk
-- that might be the start of a match and prepend it to the next one.
function rewrite(r)
    if not (r.content_type or ""):match("^text/html") then
        return                                   -- not HTML: decline, pass the body unchanged
    end
    coroutine.yield('<div class="banner">served through a Lua filter</div>\n')
    local carry = ""
    while bucket do
        local text = carry .. bucket
        -- hold back a possible partial "http://" at the end of this chunk
        local cut = #text - 6
        if cut < 0 then cut = 0 end
        carry = text:sub(cut + 1)
        local out = text:sub(1, cut):gsub("http://", "https://")
        coroutine.yield(out)
    end
    coroutine.yield(carry:gsub("http://", "https://") .. "\n<!-- rewritten by html_rewrite.lua -->\n")
end
