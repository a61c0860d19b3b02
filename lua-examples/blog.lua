-- Target of the URL rewriter example (hooks/rewrite.lua): /blog/<slug>.
function handle(r)
    r.content_type = "text/plain; charset=utf-8"
    local slug = r:parseargs().slug or "(none)"
    r:puts("blog post: ", slug, "\n")
end
