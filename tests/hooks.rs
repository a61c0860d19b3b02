//! Every request phase against a real httpd with mod_rewrite, mod_alias, mod_auth_basic,
//! mod_authn_file, mod_authz_core/user and mod_log_config: return-value rules, early/late
//! ordering, inline blocks, LuaInherit, LuaAuthzProvider, and httpd-tests' lua.t inherit cases
//! compared with Debian's mod_lua.
mod common;
use common::*;

const HOOKS: &str = r#"
function pre(r)
  if r.uri:match("^/pre") then r.headers_out["X-Pre-Uri"] = r.uri end
  return apache2.DECLINED
end
function early_translate(r)
  if r.uri == "/alias-early/x.txt" then r.filename = r.document_root .. "/from-lua.txt" return apache2.OK end
  if r.uri == "/rw" then r.uri = "/lua.txt" end
  return apache2.DECLINED
end
function late_translate(r)
  if r.uri == "/alias-late/x.txt" then r.filename = r.document_root .. "/from-lua.txt" return apache2.OK end
  return apache2.DECLINED
end
function middle_translate(r)
  if r.uri == "/rw-middle" then r.uri = "/lua.txt" end
  return apache2.DECLINED
end
function m2s(r)
  if r.uri == "/m2s" then r.content_type = "text/plain" r:puts("from map_to_storage") return apache2.DONE end
  return apache2.DECLINED
end
function access(r)
  if r.uri:match("^/forbidden") then return 403 end
  if r.uri == "/nonnumber.txt" then return "yes" end
  if r.uri == "/hookerror.txt" then error("access hook failed") end
  return apache2.DECLINED
end
function access_first(r)
  if r.uri == "/chain.txt" then r.notes["first"] = "1" return apache2.OK end
  return apache2.DECLINED
end
function access_second(r)
  if r.uri == "/chain.txt" then r.headers_out["X-Second-Ran"] = "1" end
  return apache2.DECLINED
end
function check_user(r)
  local pw = r.basic_auth_pw
  if r.user == "alice" and pw == "wonder" then return apache2.OK end
  return 401
end
function auth_ok(r)
  return apache2.OK
end
function types(r)
  if r.uri:match("%.weird$") then r.content_type = "application/x-weird" return apache2.OK end
  return apache2.DECLINED
end
function fixups(r)
  r.headers_out["X-Content-Type-Options"] = "nosniff"
  if r.uri == "/created.txt" then r.status = 201 return apache2.OK end
  return apache2.DECLINED
end
function log(r)
  if r.uri == "/nolog.txt" then return apache2.DONE end
  return apache2.OK
end
function quick(r)
  if r.uri == "/quick" then r.content_type = "text/plain" r:puts("quick answer") return apache2.OK end
  return apache2.DECLINED
end
function provider(r, a, b)
  local want = r:parseargs().want
  if want == "error" then error("provider failed") end
  if want == "nan" then return "granted?" end
  if want == "nouser" then
    if r.user then return apache2.AUTHZ_GRANTED end
    return apache2.AUTHZ_DENIED_NO_USER
  end
  if want == a or want == b then return apache2.AUTHZ_GRANTED end
  return apache2.AUTHZ_DENIED
end
"#;

fn server() -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    Some(
        Config::new()
            .load("alias_module", "mod_alias.so")
            .load("rewrite_module", "mod_rewrite.so")
            .load("authn_core_module", "mod_authn_core.so")
            .load("authz_user_module", "mod_authz_user.so")
            .directives(
                "LuaRoot {root}\n\
                 LuaAuthzProvider lua-test hooks.lua provider\n\
                 LuaHookPreTranslateName hooks.lua pre\n\
                 LuaHookTranslateName hooks.lua early_translate early\n\
                 LuaHookTranslateName hooks.lua middle_translate\n\
                 LuaHookTranslateName hooks.lua late_translate late\n\
                 LuaHookMapToStorage hooks.lua m2s\n\
                 LuaHookAccessChecker hooks.lua access_first early\n\
                 LuaHookAccessChecker hooks.lua access_second early\n\
                 LuaHookAccessChecker hooks.lua access\n\
                 LuaHookTypeChecker hooks.lua types\n\
                 LuaHookFixups hooks.lua fixups\n\
                 LuaHookLog hooks.lua log\n\
                 LuaQuickHandler hooks.lua quick\n\
                 Alias /alias-early {docroot}/aliased\n\
                 Alias /alias-late {docroot}/aliased\n\
                 RewriteEngine On\n\
                 RewriteRule ^/rw$ /rewritten.txt\n\
                 RewriteRule ^/rw-middle$ /rewritten.txt\n\
                 LogFormat \"%U %>s\" short\n\
                 CustomLog {root}/logs/access_log short\n\
                 <Location /login>\n AuthType Basic\n AuthName lua\n Require valid-user\n LuaHookCheckUserID hooks.lua check_user\n</Location>\n\
                 <Location /bypass>\n AuthType Basic\n AuthName lua\n Require user bob\n LuaHookCheckUserID hooks.lua check_user\n LuaHookAuthChecker hooks.lua auth_ok\n</Location>\n\
                 <Location /z/one>\n Require lua-test a b\n</Location>\n\
                 <Location /z/two>\n Require lua-test c d\n</Location>\n\
                 <Location /z/all>\n <RequireAll>\n  Require lua-test a b\n  Require lua-test b c\n </RequireAll>\n</Location>\n\
                 <Location /z/any>\n <RequireAny>\n  Require lua-test a x\n  Require lua-test b y\n </RequireAny>\n</Location>\n\
                 <Location /z/not>\n <RequireAll>\n  Require all granted\n  Require not lua-test a b\n </RequireAll>\n</Location>\n\
                 <Location /z/nouser>\n AuthType Basic\n AuthName lua\n LuaHookCheckUserID hooks.lua check_user\n Require lua-test x y\n</Location>\n\
                 <Location /inline>\n\
                 <LuaHookFixups>\n\
                   r.headers_out[\"X-Inline\"] = \"nameless \" .. r.uri\n\
                   return apache2.DECLINED\n\
                 </LuaHookFixups>\n\
                 <LuaHookAccessChecker named_access early>\n\
                   function named_access(r)\n\
                     if r.uri == \"/inline/fail.txt\" then error(\"inline failure\") end\n\
                     r.headers_out[\"X-Named\"] = \"early\"\n\
                     return apache2.DECLINED\n\
                   end\n\
                 </LuaHookAccessChecker>\n\
                 </Location>\n",
            )
            .file("hooks.lua", HOOKS)
            .file("htdocs/from-lua.txt", "from lua")
            .file("htdocs/aliased/x.txt", "from alias")
            .file("htdocs/lua.txt", "lua target")
            .file("htdocs/rewritten.txt", "rewritten by mod_rewrite")
            .file("htdocs/pre x.txt", "pre")
            .file("htdocs/forbidden.txt", "x")
            .file("htdocs/nonnumber.txt", "x")
            .file("htdocs/hookerror.txt", "x")
            .file("htdocs/chain.txt", "chain")
            .file("htdocs/file.weird", "weird")
            .file("htdocs/created.txt", "created")
            .file("htdocs/nolog.txt", "x")
            .file("htdocs/logged.txt", "x")
            .file("htdocs/login/index.txt", "welcome")
            .file("htdocs/bypass/index.txt", "bypassed")
            .file("htdocs/inline/ok.txt", "ok")
            .file("htdocs/inline/fail.txt", "x")
            .start(),
    )
}

#[test]
fn translate_name_slots_against_alias_and_rewrite() {
    let Some(s) = server() else { return };
    // early runs before mod_alias: the Lua mapping wins.
    assert_eq!(s.get("/alias-early/x.txt").text(), "from lua");
    // late runs after mod_alias, which already mapped the URI.
    assert_eq!(s.get("/alias-late/x.txt").text(), "from alias");
    // early runs before mod_rewrite: the changed URI no longer matches the RewriteRule.
    assert_eq!(s.get("/rw").text(), "lua target");
    // middle runs after mod_rewrite (APR_HOOK_FIRST), which already rewrote.
    assert_eq!(s.get("/rw-middle").text(), "rewritten by mod_rewrite");
    // pre_translate_name sees the URI before %-decoding.
    assert_eq!(
        s.get("/pre%20x.txt").header("x-pre-uri"),
        Some("/pre%20x.txt")
    );
}

#[test]
fn phases_and_return_values() {
    let Some(s) = server() else { return };
    let r = s.get("/m2s");
    assert_eq!((r.status, r.text().as_str()), (200, "from map_to_storage"));
    assert_eq!(s.get("/forbidden.txt").status, 403);
    // OK from the first early access hook ends the Lua hooks of that slot.
    let r = s.get("/chain.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-second-ran"), None);
    assert_eq!(s.get("/nonnumber.txt").status, 500);
    assert_eq!(s.get("/hookerror.txt").status, 500);
    let log = s.error_log();
    assert!(log.contains("AH03017: Lua hook "), "{log}");
    assert!(log.contains("did not return a numeric value"), "{log}");
    assert!(
        log.contains("hooks.lua:")
            && log.contains("access hook failed")
            && log.contains("stack traceback"),
        "{log}"
    );
    let r = s.get("/file.weird");
    assert_eq!(r.header("content-type"), Some("application/x-weird"));
    let r = s.get("/created.txt");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let r = s.get("/quick");
    assert_eq!((r.status, r.text().as_str()), (200, "quick answer"));
    s.assert_no_crash();
}

#[test]
fn authentication_hooks() {
    let Some(s) = server() else { return };
    let alice = ("Authorization", "Basic YWxpY2U6d29uZGVy"); // alice:wonder
    let wrong = ("Authorization", "Basic YWxpY2U6bm8="); // alice:no
    assert_eq!(s.get("/login/index.txt").status, 401);
    assert_eq!(
        s.request("GET", "/login/index.txt", &[wrong], b"").status,
        401
    );
    assert_eq!(
        s.request("GET", "/login/index.txt", &[alice], b"").text(),
        "welcome"
    );
    // A Lua auth_checker that returns OK bypasses `Require user bob` (as in mod_lua).
    assert_eq!(
        s.request("GET", "/bypass/index.txt", &[alice], b"").text(),
        "bypassed"
    );
}

#[test]
fn log_hook_done_suppresses_the_access_log() {
    let Some(s) = server() else { return };
    s.get("/logged.txt");
    s.get("/nolog.txt");
    s.get("/logged.txt");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let access = std::fs::read_to_string(s.root.join("logs/access_log")).unwrap_or_default();
    assert!(access.contains("/logged.txt 200"), "{access}");
    assert!(!access.contains("/nolog.txt"), "{access}");
}

#[test]
fn authz_provider_per_require_line() {
    let Some(s) = server() else { return };
    let cases: &[(&str, u16)] = &[
        // Granted requests reach the (missing) file: 404; denied ones get 403.
        ("/z/one/x?want=a", 404),
        ("/z/one/x?want=b", 404),
        ("/z/one/x?want=c", 403),
        ("/z/two/x?want=c", 404), // granted (c), then no such file
        ("/z/two/x?want=a", 403),
        ("/z/all/x?want=b", 404),
        ("/z/all/x?want=a", 403),
        ("/z/any/x?want=y", 404),
        ("/z/any/x?want=z", 403),
        ("/z/not/x?want=a", 403),
        ("/z/not/x?want=q", 404),
        ("/z/one/x?want=error", 500),
        ("/z/one/x?want=nan", 500),
    ];
    for (path, status) in cases {
        assert_eq!(s.get(path).status, *status, "{path}");
    }
    // DENIED_NO_USER makes httpd authenticate and ask the provider again.
    assert_eq!(s.get("/z/nouser/x?want=nouser").status, 401);
    let alice = ("Authorization", "Basic YWxpY2U6d29uZGVy");
    assert_eq!(
        s.request("GET", "/z/nouser/x?want=nouser", &[alice], b"")
            .status,
        404
    );
    assert_logged(
        &s.error_log(),
        &[
            "AH02316: lua: Lua error in authz provider lua-test ",
            "provider failed",
            "AH02317: Error: authz provider lua-test did not return integer",
        ],
    );
}

#[test]
fn inline_blocks() {
    let Some(s) = server() else { return };
    let r = s.get("/inline/ok.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-inline"), Some("nameless /inline/ok.txt"));
    assert_eq!(r.header("x-named"), Some("early"));
    assert_eq!(s.get("/inline/fail.txt").status, 500);
    // The runtime error names the config file and the line of `error(...)` in it.
    let conf = std::fs::read_to_string(s.root.join("conf/httpd.conf")).unwrap();
    let line = conf
        .lines()
        .position(|l| l.contains("inline failure"))
        .unwrap()
        + 1;
    let log = s.error_log();
    assert!(
        log.contains(&format!("httpd.conf:{line}: inline failure")),
        "line {line}:\n{log}"
    );
}

/// `early` and `late` where mod_lua accepts the word but has no harness for it (it ignores
/// it for LuaHookCheckUserID and never runs such blocks): here they run before and after the
/// other modules' hooks of the phase, except a late authentication hook (see below).
#[test]
fn early_and_late_in_phases_mod_lua_runs_only_in_the_middle() {
    if !httpd_available() {
        return;
    }
    // A `directive` block that appends its `word` to header `header` of table `table`.
    let note = |directive: &str, table: &str, header: &str, sep: &str, name: &str, word: &str| {
        format!(
            "<{directive} {name} {word}>\n\
             function {name}(r)\n\
               local v = r.{table}[\"{header}\"]\n\
               r.{table}[\"{header}\"] = v and (v .. \"{sep}{word}\") or \"{word}\"\n\
               return apache2.DECLINED\n\
             end\n\
             </{directive}>\n"
        )
    };
    let append =
        |name: &str, word: &str| note("LuaHookFixups", "headers_in", "X-Order", ", ", name, word);
    // A block of `phase` that answers `/<what>-<word>` itself.
    let answer = |directive: &str, what: &str, word: &str, ret: &str| {
        format!(
            "<{directive} {what}_{word} {word}>\n\
             function {what}_{word}(r)\n\
               if r.uri ~= \"/{what}-{word}\" then return apache2.DECLINED end\n\
               r.content_type = \"text/plain\"\n\
               r:puts(\"{what} {word}\")\n\
               return {ret}\n\
             end\n\
             </{directive}>\n"
        )
    };
    // pre_translate_name blocks note their turn in a response header.
    let mark = |word: &str| {
        note(
            "LuaHookPreTranslateName",
            "err_headers_out",
            "X-Pre",
            ",",
            &format!("pre_{word}"),
            word,
        )
    };
    let s = Config::new()
        .load("headers_module", "mod_headers.so")
        .load("auth_basic_module", "mod_auth_basic.so")
        .load("authn_core_module", "mod_authn_core.so")
        .load("authn_file_module", "mod_authn_file.so")
        .load("authz_user_module", "mod_authz_user.so")
        .directives(&format!(
            "LuaRoot {{root}}\n\
             <Location /order>\n RequestHeader append X-Order middle\n{}{}</Location>\n\
             <Location /early-auth>\n AuthType Basic\n AuthName lua\n AuthBasicProvider file\n \
               AuthUserFile {{root}}/users\n Require valid-user\n \
               LuaHookCheckUserID auth.lua lua_user early\n</Location>\n\
             <Location /late-auth-token>\n AuthType Token\n AuthName lua\n Require valid-user\n \
               LuaHookCheckUserID auth.lua lua_user late\n</Location>\n\
             <LuaHookTypeChecker early_type early>\n\
             function early_type(r)\n\
               if r.uri:match(\"^/types/early\") then r.content_type = \"text/x-early\" return apache2.OK end\n\
               return apache2.DECLINED\n\
             end\n\
             </LuaHookTypeChecker>\n\
             <LuaHookTypeChecker late_type late>\n\
             function late_type(r)\n\
               r.err_headers_out[\"X-Late-Type\"] = \"ran\"\n\
               return apache2.DECLINED\n\
             end\n\
             </LuaHookTypeChecker>\n\
             <LuaHookTranslateName virtual early>\n\
             function virtual(r)\n\
               if r.uri == \"/virtual\" then return apache2.OK end\n\
               return apache2.DECLINED\n\
             end\n\
             </LuaHookTranslateName>\n{}{}{}{}{}{}",
            append("first", "early"),
            append("last", "late"),
            answer("LuaQuickHandler", "quick", "early", "apache2.OK"),
            answer("LuaQuickHandler", "quick", "late", "apache2.OK"),
            answer("LuaHookMapToStorage", "m2s", "early", "apache2.DONE"),
            answer("LuaHookMapToStorage", "m2s", "late", "apache2.DONE"),
            mark("early"),
            mark("late"),
        ))
        .file(
            "auth.lua",
            "function lua_user(r) r.user = \"from-lua\" return apache2.OK end\n",
        )
        .file("users", "")
        .file(
            "htdocs/order/echo.lua",
            "function handle(r) r.content_type = \"text/plain\" r:puts(r.headers_in[\"X-Order\"] or \"-\") end\n",
        )
        .file("htdocs/early-auth/index.txt", "in")
        .file("htdocs/late-auth-token/index.txt", "token")
        .file("htdocs/types/early.txt", "e")
        .start();
    // Fixups: the early block before mod_headers' RequestHeader, the late one after it.
    let r = s.get("/order/echo.lua");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "early, middle, late");
    // Authentication: early runs before mod_auth_basic and authenticates. Late has no
    // position that would ever run (after mod_authn_core, which refuses every AuthType no
    // module took), so it runs in the middle as in mod_lua, with a warning at start-up: it
    // decides under an AuthType mod_auth_basic declines.
    let r = s.get("/early-auth/index.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "in"));
    let r = s.get("/late-auth-token/index.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "token"));
    assert!(s
        .error_log()
        .contains("LuaHookCheckUserID ... late: no authentication hook runs after"));
    // Types: early decides before mod_mime (OK ends the phase); late comes after mod_mime,
    // which ends the phase for every file it types.
    let r = s.get("/types/early.txt");
    assert_eq!(r.header("content-type"), Some("text/x-early"));
    assert_eq!(r.header("x-late-type"), None);
    // A request without a file (a translate hook took it), which mod_mime declines, reaches
    // the late type hook.
    assert_eq!(s.get("/virtual").header("x-late-type"), Some("ran"));
    // Quick handler and map_to_storage blocks answer in both slots; pre_translate_name
    // blocks run in order.
    for path in ["/quick-early", "/quick-late", "/m2s-early", "/m2s-late"] {
        let r = s.get(path);
        let want = path[1..].replace('-', " ");
        assert_eq!((r.status, r.text()), (200, want), "{path}");
    }
    assert_eq!(s.get("/order/echo.lua").header("x-pre"), Some("early,late"));
}

#[test]
fn hook_config_errors() {
    if !httpd_available() {
        return;
    }
    let cases: &[(&str, &str)] = &[
        (
            "LuaHookTranslateName /x.lua f sometime",
            "Third argument must be 'early' or 'late'",
        ),
        (
            "LuaHookAccessChecker /x.lua f first",
            "Third argument must be 'early' or 'late'",
        ),
        (
            "<Directory /tmp>\nLuaHookTranslateName /x.lua f\n</Directory>",
            "cannot occur within <Directory> section",
        ),
        (
            "<Directory /tmp>\nLuaQuickHandler /x.lua f\n</Directory>",
            "cannot occur within <Directory> section",
        ),
        ("LuaHookFixups /x.lua", "LuaHookFixups takes two arguments"),
        (
            "<LuaHookAccessChecker f sometime>\nfunction f(r) end\n</LuaHookAccessChecker>",
            "2nd argument must be 'early' or 'late'",
        ),
        (
            "<LuaHookFixups>\nlocal x = = 1\n</LuaHookFixups>",
            "Lua Error:",
        ),
        ("Lua_____ByteCodeHack", "internal to mod_lua"),
        (
            "LuaHookInsertFilter /x.lua f late",
            "LuaHookInsertFilter takes two arguments",
        ),
    ];
    for (conf, msg) in cases {
        match Server::config_test(&Config::new().directives(conf)) {
            Ok(out) => panic!("{conf:?} should fail apache2 -t: {out}"),
            Err(out) => assert!(out.contains(msg), "{conf:?}: expected {msg:?} in:\n{out}"),
        }
    }
    // What mod_lua takes and ignores loads here too, with a warning.
    let accepted: &[(&str, &str)] = &[
        (
            "LuaHookCheckUserID /x.lua f sometime",
            "httpd.conf:",
        ),
        (
            "LuaHookCheckUserID /x.lua f sometime",
            "LuaHookCheckUserID ... sometime: neither 'early' nor 'late', ignored",
        ),
        (
            "<LuaHookAccessChecker f early as before>\nfunction f(r) end\n</LuaHookAccessChecker>",
            "<LuaHookAccessChecker> takes a function name and 'early' or 'late'; ignored: as before",
        ),
    ];
    for (conf, msg) in accepted {
        match Server::config_test(&Config::new().directives(conf)) {
            Ok(out) => assert!(out.contains(msg), "{conf:?}: expected {msg:?} in:\n{out}"),
            Err(out) => panic!("{conf:?} should pass apache2 -t: {out}"),
        }
    }
    // A syntax error in a block names the config file and the line in it.
    let err = Server::config_test(
        &Config::new().directives("\n\n<LuaHookFixups>\n\nlocal x = = 1\n</LuaHookFixups>"),
    )
    .unwrap_err();
    assert!(
        err.contains("httpd.conf:") && err.contains("'=' expected")
            || err.contains("unexpected symbol"),
        "{err}"
    );
    let ok = "<LuaHookTranslateName t early>\nfunction t(r) return apache2.DECLINED end\n</LuaHookTranslateName>\n\
              <Location /q>\nLuaQuickHandler /x.lua f\nLuaHookTranslateName /x.lua f late\n</Location>\n\
              LuaHookAuthChecker /x.lua f late\nLuaHookLog /x.lua f\nLuaHookInsertFilter /x.lua f";
    Server::config_test(&Config::new().directives(ok)).unwrap();
}

/// httpd-tests t/modules/lua.t TC01–TC08 (translate_name + LuaInherit), run under both modules.
const LUA_T_CONF: &str = "LuaHookTranslateName {root}/translate.lua translate_name\n\
    <Location /modules/lua/translate-inherit-after>\n LuaHookTranslateName {root}/translate.lua translate_name2\n LuaInherit parent-last\n</Location>\n\
    <Location /modules/lua/translate-inherit-before>\n LuaHookTranslateName {root}/translate.lua translate_name2\n LuaInherit parent-first\n</Location>\n\
    <Location /modules/lua/translate-inherit-default-before>\n LuaHookTranslateName {root}/translate.lua translate_name2\n</Location>\n";

const TRANSLATE_LUA: &str = "function translate_name(r)\n\
      if r:parseargs().translateme then r.uri = '/modules/lua/hello.lua' return apache2.DECLINED end\n\
      return apache2.DECLINED\n\
    end\n\
    function translate_name2(r)\n\
      local args = r:parseargs()\n\
      if args.translateme then\n\
        r.uri = '/modules/lua/hello2.lua'\n\
        if args.ok then r.filename = r.document_root .. r.uri return apache2.OK end\n\
      end\n\
      return apache2.DECLINED\n\
    end\n";

#[test]
fn lua_t_inherit_cases_match_mod_lua() {
    if !httpd_available() {
        return;
    }
    let mut modules = vec![Module::Ours];
    if std::path::Path::new(DEBIAN_MOD_LUA).exists() {
        modules.push(Module::DebianModLua);
    }
    let cases: &[(&str, &str)] = &[
        ("/modules/lua/hello.lua", "Hello Lua World!\n"),
        ("/modules/lua/404?translateme=1", "Hello Lua World!\n"),
        (
            "/modules/lua/translate-inherit-before/404?translateme=1",
            "other lua handler\n",
        ),
        (
            "/modules/lua/translate-inherit-default-before/404?translateme=1",
            "other lua handler\n",
        ),
        (
            "/modules/lua/translate-inherit-after/404?translateme=1",
            "Hello Lua World!\n",
        ),
        (
            "/modules/lua/translate-inherit-before/404?translateme=1&ok=1",
            "other lua handler\n",
        ),
        (
            "/modules/lua/translate-inherit-default-before/404?translateme=1&ok=1",
            "other lua handler\n",
        ),
        (
            "/modules/lua/translate-inherit-after/404?translateme=1&ok=1",
            "other lua handler\n",
        ),
    ];
    for m in modules {
        let s = Config::new()
            .module(m)
            .directives(LUA_T_CONF)
            .file("translate.lua", TRANSLATE_LUA)
            .file("htdocs/modules/lua/hello.lua", "function handle(r) r.content_type = 'text/plain' r:puts('Hello Lua World!\\n') end")
            .file("htdocs/modules/lua/hello2.lua", "function handle(r) r:puts('other lua handler\\n') end")
            .start();
        for (path, body) in cases {
            let r = s.get(path);
            assert_eq!((r.status, r.text().as_str()), (200, *body), "{m:?} {path}");
        }
    }
}

#[test]
fn subrequests_and_internal_redirects() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .load("dir_module", "mod_dir.so")
        .directives(
            "LuaRoot {root}\n\
             LuaScope thread\n\
             LuaQuickHandler sub.lua quick\n\
             LuaHookFixups sub.lua fixups\n\
             ErrorDocument 404 /err.lua\n\
             <Directory {docroot}/qs>\n DirectoryIndex index.html\n</Directory>\n",
        )
        .file(
            "sub.lua",
            "function quick(r)\n\
               local f = io.open(r.document_root .. '/../logs/quick.log', 'a') f:write(r.uri, '\\n') f:close()\n\
               if r.uri == '/qs/index.html' then r:puts('quick:', tostring(r.is_initial_req)) return apache2.OK end\n\
               return apache2.DECLINED\n\
             end\n\
             function fixups(r)\n\
               if r.uri == '/stash' then kept = r end\n\
               if r.uri == '/use' and kept == nil then r.err_headers_out['X-Kept'] = 'none' return apache2.DECLINED end\n\
               if r.uri == '/use' then return kept.uri and apache2.DECLINED end\n\
               r.err_headers_out['X-Fixups'] = r.uri\n\
               return apache2.DECLINED\n\
             end\n",
        )
        .file("htdocs/qs/index.html", "static index")
        .file("htdocs/err.lua", "function handle(r) r:puts('error page for ', r.uri, ' initial=', tostring(r.is_initial_req)) end")
        .file("htdocs/stash", "s")
        .file("htdocs/use", "u")
        .start();
    make_writable(s.root.join("logs"));
    // mod_dir looks index.html up with a lookup subrequest and fast-redirects to it: the
    // quick handler runs for the main request only, never for the lookup.
    assert_eq!(s.get("/qs/").text(), "static index");
    let calls = std::fs::read_to_string(s.root.join("logs/quick.log")).unwrap();
    assert_eq!(calls.lines().collect::<Vec<_>>(), vec!["/qs/"], "{calls}");
    // ErrorDocument: an internal redirect runs the hooks and the handler for the error page.
    let r = s.get("/missing");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "error page for /err.lua initial=false");
    assert_eq!(r.header("x-fixups"), Some("/err.lua"));
    // A hook that keeps `r` and uses it on a later request gets an error, not a dangling pointer.
    // `kept` lives only in the VM that ran /stash: when /use gets another VM of the pool, it
    // answers 200 with "X-Kept: none" and the pair is tried again.
    let mut c = s.connect();
    let mut failed = false;
    for _ in 0..20 {
        assert_eq!(c.send("GET", "/stash", &[], b"", false).status, 200);
        let r = c.send("GET", "/use", &[], b"", false);
        if r.status == 500 {
            failed = true;
            break;
        }
        assert_eq!(r.header("x-kept"), Some("none"));
    }
    assert!(failed);
    assert!(s
        .error_log()
        .contains("request object used after its request ended"));
    s.assert_no_crash();
}

/// Hooks that only a .htaccess file sets (the server configuration has no Lua hook at all, so
/// every phase entry point starts out skipping its configuration lookup): they run in every
/// phase httpd reaches after reading the file, on every child.
#[test]
fn hooks_set_only_in_htaccess() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("LuaRoot {docroot}/ht\n<Directory {docroot}/ht>\n AllowOverride All\n</Directory>\n")
        .file(
            "htdocs/ht/.htaccess",
            "LuaHookAccessChecker h.lua access\nLuaHookFixups h.lua fixups\n",
        )
        .file(
            "htdocs/ht/h.lua",
            "function access(r) if r.uri:match('deny') then return 403 end return apache2.DECLINED end\n\
             function fixups(r) r.headers_out['X-Fixed'] = 'yes' return apache2.DECLINED end\n",
        )
        .file("htdocs/ht/page.txt", "page\n")
        .file("htdocs/ht/deny.txt", "secret\n")
        .file("htdocs/plain.txt", "plain\n")
        .start();
    // Both children: more requests than one child's share.
    for _ in 0..6 {
        let r = s.get("/ht/page.txt");
        assert_eq!((r.status, r.text().as_str()), (200, "page\n"));
        assert_eq!(r.header("x-fixed"), Some("yes"));
        assert_eq!(s.get("/ht/deny.txt").status, 403);
        let plain = s.get("/plain.txt");
        assert_eq!((plain.status, plain.header("x-fixed")), (200, None));
    }
    s.assert_no_crash();
}
