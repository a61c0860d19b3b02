-- Protected by hooks/basicauth.lua (Basic authentication against hooks/users.txt).
function handle(r)
    r.content_type = "text/plain"
    r:puts("hello ", r.user, "\n")
end
