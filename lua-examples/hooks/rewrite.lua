-- URL rewriter (translate_name hook): pretty URLs for the blog example.
--   /blog/<slug>  →  /blog.lua?slug=<slug>
-- Returning DECLINED lets httpd map the rewritten URI to a file as usual.
function rewrite(r)
    local slug = r.uri:match("^/blog/([%w%-]+)$")
    if slug then
        r.uri = "/blog.lua"
        r.args = "slug=" .. slug
    end
    return apache2.DECLINED
end
