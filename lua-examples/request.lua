-- Shows what a script can read from r: request line, headers, arguments.
function handle(r)
    r.content_type = "text/plain; charset=utf-8"
    r:puts("method:       ", r.method, "\n")
    r:puts("uri:          ", r.uri, "\n")
    r:puts("args:         ", tostring(r.args), "\n")
    r:puts("protocol:     ", r.protocol, "\n")
    r:puts("hostname:     ", r.hostname, "\n")
    r:puts("filename:     ", r.filename, "\n")
    r:puts("useragent_ip: ", r.useragent_ip, "\n\nheaders:\n")
    for name, value in pairs(r.headers_in) do
        r:puts("  ", name, ": ", value, "\n")
    end
    local _, multi = r:parseargs()
    r:puts("\narguments:\n")
    for name, values in pairs(multi) do
        r:puts("  ", name, " = ", table.concat(values, ", "), "\n")
    end
    r.headers_out["X-Handled-By"] = "request.lua"
end
