//! Per-directory and per-server configuration: typed values, parsing of directive arguments
//! with mod_lua's error texts, merging with LuaInherit, and the pure path helpers
//! (package.path munging, `$N` interpolation). No FFI here.
#![forbid(unsafe_code)]

use crate::apr::{ConfRef, MergeInputsOutlive};
use crate::httpd::Regex;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// `LuaScope`: which VM (and which set of globals) a script call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Once,
    Request,
    Conn,
    Thread,
    Server { min: u32, max: u32 },
}

/// `LuaCodeCache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCache {
    Stat,
    Forever,
    Never,
}

/// `LuaInherit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inherit {
    None,
    ParentFirst,
    ParentLast,
}

/// mod_lua `register_lua_scope`: names are case-sensitive; min/max only for `server`, parsed
/// like `atoi`, min 0 → 1, max < min → max = min.
pub fn parse_scope(scope: &str, min: Option<&str>, max: Option<&str>) -> Result<Scope, String> {
    Ok(match scope {
        "once" => Scope::Once,
        "request" => Scope::Request,
        "conn" => Scope::Conn,
        "thread" => Scope::Thread,
        "server" => {
            let min = min.map(atoi).unwrap_or(1).max(1) as u32;
            let max = (max.map(atoi).unwrap_or(1).max(0) as u32).max(min);
            Scope::Server { min, max }
        }
        other => {
            return Err(format!(
                "Invalid value for LuaScope, '{other}', acceptable values are: 'once', \
                 'request', 'conn', 'thread', 'server'"
            ))
        }
    })
}

/// C `atoi`: optional sign and leading digits, anything else ends the number; no digits = 0.
pub fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add((b - b'0') as i64);
    }
    if neg {
        -n
    } else {
        n
    }
}

pub fn parse_codecache(arg: &str) -> Result<CodeCache, String> {
    match arg.to_ascii_lowercase().as_str() {
        "stat" => Ok(CodeCache::Stat),
        "forever" => Ok(CodeCache::Forever),
        "never" => Ok(CodeCache::Never),
        _ => Err(format!(
            "LuaCodeCache type of '{arg}' not recognized, valid options are 'never', 'stat', and 'forever'"
        )),
    }
}

pub fn parse_inherit(arg: &str) -> Result<Inherit, String> {
    match arg.to_ascii_lowercase().as_str() {
        "none" => Ok(Inherit::None),
        "parent-first" => Ok(Inherit::ParentFirst),
        "parent-last" => Ok(Inherit::ParentLast),
        _ => Err(format!(
            "LuaInherit type of '{arg}' not recognized, valid options are 'none', 'parent-first', and 'parent-last'"
        )),
    }
}

/// The request phases a Lua hook can run in (H01–H09, H14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Quick,
    PreTranslateName,
    TranslateName,
    MapToStorage,
    CheckUserId,
    AccessChecker,
    AuthChecker,
    TypeChecker,
    Fixups,
    Log,
    InsertFilter,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Quick,
        Phase::PreTranslateName,
        Phase::TranslateName,
        Phase::MapToStorage,
        Phase::CheckUserId,
        Phase::AccessChecker,
        Phase::AuthChecker,
        Phase::TypeChecker,
        Phase::Fixups,
        Phase::Log,
        Phase::InsertFilter,
    ];

    /// mod_lua's phase name (used in its log lines).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Quick => "quick",
            Phase::PreTranslateName => "pre_translate_name",
            Phase::TranslateName => "translate_name",
            Phase::MapToStorage => "map_to_storage",
            Phase::CheckUserId => "check_user_id",
            Phase::AccessChecker => "access_checker",
            Phase::AuthChecker => "auth_checker",
            Phase::TypeChecker => "type_checker",
            Phase::Fixups => "fixups",
            Phase::Log => "log_transaction",
            Phase::InsertFilter => "insert_filter",
        }
    }

    /// Phases whose hooks may say `early` or `late`: every phase mod_lua's syntax lets them
    /// (the file forms of translate_name, check_user_id, access_checker and auth_checker, and
    /// every inline block). mod_lua has early and late harnesses for three of them only, so
    /// there check_user_id ignores the word and blocks of the other phases never run; here
    /// each has its harnesses before and after the other modules' hooks.
    pub fn has_slots(self) -> bool {
        !matches!(self, Phase::Log | Phase::InsertFilter)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Where in httpd's hook order a Lua hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Before the other modules of the phase (APR_HOOK_FIRST - 1).
    Early,
    Middle,
    /// After them (APR_HOOK_LAST + 1).
    Late,
}

impl Slot {
    /// The optional third argument: `early` or `late`, case-insensitive.
    pub fn parse(arg: Option<&str>) -> Result<Slot, String> {
        match arg.map(str::to_ascii_lowercase).as_deref() {
            None => Ok(Slot::Middle),
            Some("early") => Ok(Slot::Early),
            Some("late") => Ok(Slot::Late),
            Some(_) => Err("Third argument must be 'early' or 'late'".to_string()),
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Lua code given inline in the configuration (`<LuaHookFixups> … </LuaHookFixups>`).
#[derive(Debug)]
pub struct InlineChunk {
    /// Identity of the block in VM caches (`<config file>:<line>`).
    pub key: String,
    /// The configuration file it came from.
    pub file: String,
    /// The body, preceded by blank lines so that Lua's line numbers are the config file's.
    pub source: String,
}

/// A script file named in the configuration (a hook, filter or authz provider script). As in
/// mod_lua it is resolved against LuaRoot when a request runs it, except that a path that
/// resolving would leave as it is (an absolute one in canonical form, the usual case) is
/// recognised once, here, instead of on every call.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptFile {
    path: String,
    canonical: bool,
}

impl ScriptFile {
    pub fn new(path: String) -> ScriptFile {
        let canonical = crate::httpd::is_merged_form(&path);
        ScriptFile { path, canonical }
    }

    /// The path as configured.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The path a request runs: merged with `root` (LuaRoot) unless already canonical.
    pub fn resolve(&self, pool: crate::apr::Pool<'_>, root: Option<&str>) -> Cow<'_, str> {
        if self.canonical {
            return Cow::Borrowed(&self.path);
        }
        crate::httpd::merge_path(pool, root, &self.path).unwrap_or(Cow::Borrowed(&self.path))
    }
}

/// What a hook runs.
#[derive(Debug, Clone)]
pub enum HookCode {
    /// A script file, resolved against LuaRoot per request.
    File(ScriptFile),
    Inline(Arc<InlineChunk>),
}

/// One Lua hook: its code and the global function to call (`None`: an inline block's body is
/// the hook itself, run with `r` in scope).
#[derive(Debug)]
pub struct HookSpec {
    pub code: HookCode,
    pub function: Option<String>,
}

const HOOK_LISTS: usize = Phase::ALL.len() * 3;
const _: () = assert!(HOOK_LISTS <= 64, "one bit per hook list");

/// The hook lists any configuration this process has read filled (bit [`HookTable::at`]). A
/// clear bit means no Lua hook anywhere for that phase and slot, so its entry point answers
/// DECLINED without reading the request's configuration, which costs cache misses on each of
/// the ~30 phase entry points a request passes. Bits are never cleared: a graceful restart
/// that drops hooks loads the module afresh, and a stale bit only means the full check.
static FILLED: AtomicU64 = AtomicU64::new(0);

/// Whether any configuration this process has read has a LuaMapHandler (never cleared, as
/// [`FILLED`]).
static MAP_HANDLERS: AtomicBool = AtomicBool::new(false);

/// Whether some configuration may have a LuaMapHandler.
#[inline]
pub fn may_have_map_handlers() -> bool {
    MAP_HANDLERS.load(Ordering::Relaxed)
}

/// Whether some configuration may have Lua hooks for `phase` in `slot`.
#[inline]
pub fn may_have_hooks(phase: Phase, slot: Slot) -> bool {
    FILLED.load(Ordering::Relaxed) & (1 << HookTable::at(phase, slot)) != 0
}

/// Lua hooks per phase and slot.
#[derive(Clone)]
pub struct HookTable {
    lists: [Vec<Arc<HookSpec>>; HOOK_LISTS],
}

impl Default for HookTable {
    fn default() -> Self {
        HookTable {
            lists: std::array::from_fn(|_| Vec::new()),
        }
    }
}

impl HookTable {
    const fn at(phase: Phase, slot: Slot) -> usize {
        phase.index() * 3 + slot.index()
    }

    pub fn get(&self, phase: Phase, slot: Slot) -> &[Arc<HookSpec>] {
        &self.lists[Self::at(phase, slot)]
    }

    pub fn push(&mut self, phase: Phase, slot: Slot, spec: HookSpec) {
        let at = Self::at(phase, slot);
        FILLED.fetch_or(1 << at, Ordering::Relaxed);
        self.lists[at].push(Arc::new(spec));
    }

    pub fn is_empty(&self) -> bool {
        self.lists.iter().all(|l| l.is_empty())
    }

    /// mod_lua `overlay_hook_specs`: per phase and slot, lists combine as LuaInherit says.
    pub fn merge(
        mode: Inherit,
        base: &ConfRef<HookTable>,
        add: &ConfRef<HookTable>,
        p: &MergeInputsOutlive,
    ) -> ConfRef<HookTable> {
        merge_parts(mode, base, add, p, HookTable::is_empty, |base, add| {
            let mut out = HookTable::default();
            for (i, list) in out.lists.iter_mut().enumerate() {
                *list = combine(mode, &base.lists[i], &add.lists[i]);
            }
            out
        })
    }
}

/// Which way a Lua filter works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    Input,
    Output,
}

/// One `LuaInputFilter` / `LuaOutputFilter` line.
#[derive(Debug)]
pub struct FilterSpec {
    pub name: String,
    pub file: ScriptFile,
    pub function: String,
    pub kind: FilterKind,
}

/// One `LuaMapHandler` line.
pub struct MapHandler {
    pub pattern: String,
    pub regex: Regex,
    /// File template, possibly with `$0`–`$9`; resolved against LuaRoot per request.
    pub file: String,
    /// Function template, possibly with `$0`–`$9`.
    pub function: String,
}

/// The module's per-directory configuration (also used for server and `<Location>` contexts).
#[derive(Clone, Default)]
pub struct DirConfig {
    pub scope: Option<Scope>,
    pub codecache: Option<CodeCache>,
    pub inherit: Option<Inherit>,
    pub package_paths: ConfRef<Vec<String>>,
    pub package_cpaths: ConfRef<Vec<String>>,
    pub map_handlers: ConfRef<Vec<Arc<MapHandler>>>,
    /// `LuaShowErrors`: send Lua error text to the client as mod_lua does (off by default).
    pub show_errors: Option<bool>,
    /// `LuaRoot` in effect here: base for relative script paths of mod_lua directives.
    pub root: Option<ConfRef<String>>,
    /// `LuaHook*` and `LuaQuickHandler` lines and blocks.
    pub hooks: ConfRef<HookTable>,
    /// `LuaInputFilter` / `LuaOutputFilter` lines.
    pub filters: ConfRef<Vec<Arc<FilterSpec>>>,
}

impl DirConfig {
    /// Adds a LuaMapHandler line.
    pub fn add_map_handler(&mut self, handler: MapHandler) {
        MAP_HANDLERS.store(true, Ordering::Relaxed);
        self.map_handlers.make_mut().push(Arc::new(handler));
    }

    pub fn scope(&self) -> Scope {
        self.scope.unwrap_or(Scope::Once)
    }
    pub fn codecache(&self) -> CodeCache {
        self.codecache.unwrap_or(CodeCache::Stat)
    }
    pub fn inherit(&self) -> Inherit {
        self.inherit.unwrap_or(Inherit::ParentFirst)
    }
    /// `LuaRoot` in effect here.
    pub fn root(&self) -> Option<&str> {
        self.root.as_deref().map(String::as_str)
    }
    pub fn show_errors(&self) -> bool {
        self.show_errors.unwrap_or(false)
    }

    /// No directive of this module set anything here.
    pub fn is_unset(&self) -> bool {
        self.scope.is_none()
            && self.codecache.is_none()
            && self.inherit.is_none()
            && self.package_paths.is_empty()
            && self.package_cpaths.is_empty()
            && self.map_handlers.is_empty()
            && self.show_errors.is_none()
            && self.root.is_none()
            && self.hooks.is_empty()
            && self.filters.is_empty()
    }

    /// Which input a merge would equal, when it equals one of them: a side that sets nothing
    /// adds nothing (except that a parent's `LuaInherit none` empties the child's lists).
    /// httpd merges per-directory configs on every request; handing back an input there
    /// writes nothing (a new config would bump reference counts that every worker thread
    /// reads, on both cores).
    pub fn merge_is_input<'c>(base: &'c DirConfig, add: &'c DirConfig) -> Option<&'c DirConfig> {
        if base.is_unset() {
            Some(add)
        } else if add.is_unset() && base.inherit != Some(Inherit::None) {
            Some(base)
        } else {
            None
        }
    }

    /// mod_lua `merge_dir_config`: scalar values are the child's when set, else the parent's;
    /// lists follow the effective LuaInherit. The result borrows from both inputs.
    pub fn merge(base: &DirConfig, add: &DirConfig, p: &MergeInputsOutlive) -> DirConfig {
        let inherit = add.inherit.or(base.inherit);
        let mode = inherit.unwrap_or(Inherit::ParentFirst);
        DirConfig {
            scope: add.scope.or(base.scope),
            codecache: add.codecache.or(base.codecache),
            inherit,
            package_paths: inherit_list(mode, &base.package_paths, &add.package_paths, p),
            package_cpaths: inherit_list(mode, &base.package_cpaths, &add.package_cpaths, p),
            map_handlers: inherit_list(mode, &base.map_handlers, &add.map_handlers, p),
            show_errors: add.show_errors.or(base.show_errors),
            root: add
                .root
                .as_ref()
                .or(base.root.as_ref())
                .map(|r| r.borrow(p)),
            hooks: HookTable::merge(mode, &base.hooks, &add.hooks, p),
            filters: inherit_list(mode, &base.filters, &add.filters, p),
        }
    }
}

/// A parent's and a child's list combined per LuaInherit (an owned copy).
fn combine<T: Clone>(mode: Inherit, base: &[T], add: &[T]) -> Vec<T> {
    match mode {
        Inherit::None => add.to_vec(),
        Inherit::ParentFirst => base.iter().chain(add).cloned().collect(),
        Inherit::ParentLast => add.iter().chain(base).cloned().collect(),
    }
}

/// LuaInherit over one part of a config: borrows one side when the other adds nothing (the
/// common case, so that per-request merges do not copy), else `combine`s both.
fn merge_parts<T>(
    mode: Inherit,
    base: &ConfRef<T>,
    add: &ConfRef<T>,
    p: &MergeInputsOutlive,
    is_empty: impl Fn(&T) -> bool,
    combine: impl FnOnce(&T, &T) -> T,
) -> ConfRef<T> {
    match mode {
        Inherit::None => add.borrow(p),
        _ if is_empty(add) => base.borrow(p),
        _ if is_empty(base) => add.borrow(p),
        _ => ConfRef::new(Box::new(combine(base, add))),
    }
}

/// Combines a parent's and a child's list per LuaInherit (see [`merge_parts`]).
pub fn inherit_list<T: Clone>(
    mode: Inherit,
    base: &ConfRef<Vec<T>>,
    add: &ConfRef<Vec<T>>,
    p: &MergeInputsOutlive,
) -> ConfRef<Vec<T>> {
    merge_parts(mode, base, add, p, Vec::is_empty, |b, a| {
        combine(mode, b, a)
    })
}

/// Per-server configuration.
#[derive(Clone, Default)]
pub struct ServerConfig {
    /// `LuaRoot`: base for relative file names of mod_lua directives.
    pub root: Option<String>,
}

impl ServerConfig {
    /// Unlike mod_lua (which has no server merge), a `<VirtualHost>` without its own LuaRoot
    /// inherits the main server's, as the manual describes.
    pub fn merge(base: &ServerConfig, add: &ServerConfig) -> ServerConfig {
        ServerConfig {
            root: add.root.clone().or_else(|| base.root.clone()),
        }
    }
}

/// mod_lua `munge_path`: replace the literal `./?.lua` (or `./?.so`) in Lua's default path with
/// the script's directory, then append the configured entries joined by `;` (a trailing `;`
/// when there are none).
pub fn munge_path(default: &str, pattern: &str, script_dir: &str, extra: &[String]) -> String {
    let dir = if script_dir.ends_with('/') {
        script_dir.to_string()
    } else {
        format!("{script_dir}/")
    };
    let replacement = format!("{dir}{}", &pattern[2..]);
    let mut out = default.replace(pattern, &replacement);
    out.push(';');
    out.push_str(&extra.join(";"));
    out
}

/// The directory part of a path, with a trailing `/` (httpd's `ap_make_dirstr_parent`).
pub fn parent_dir(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "",
    }
}

/// mod_lua `ap_lua_interpolate_string`: `$0`–`$9` become the captures (unmatched → ""),
/// a `$` not followed by a digit stays literal. A template without a capture reference is
/// returned as it is; bytes of a capture that are not UTF-8 become U+FFFD.
pub fn interpolate<'t>(template: &'t str, captures: &[Option<&[u8]>]) -> Cow<'t, str> {
    let t = template.as_bytes();
    let Some(first) = next_reference(t, 0) else {
        return Cow::Borrowed(template);
    };
    let mut out = Vec::with_capacity(t.len() + 16);
    let mut from = 0;
    let mut at = Some(first);
    while let Some(i) = at {
        out.extend_from_slice(&t[from..i]);
        if let Some(Some(c)) = captures.get((t[i + 1] - b'0') as usize) {
            out.extend_from_slice(c);
        }
        from = i + 2;
        at = next_reference(t, from);
    }
    out.extend_from_slice(&t[from..]);
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Where the next `$` followed by a digit starts, at or after `from`.
fn next_reference(t: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = t.get(i..)?.iter().position(|&b| b == b'$') {
        let at = i + p;
        if t.get(at + 1).is_some_and(u8::is_ascii_digit) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// The script path of a LuaMapHandler file `template` with the URI's `captures` put in, or
/// None when our guard against path traversal through captures (mod_lua has none) refuses it:
/// the path must not gain a `..` segment the template did not have, no capture may carry a
/// NUL or a backslash, and a capture that starts a path component must not start with `/`
/// (an absolute path put in by the client).
pub fn mapped_script_path<'t>(
    template: &'t str,
    captures: &[Option<&[u8]>],
) -> Option<Cow<'t, str>> {
    let path = interpolate(template, captures);
    if let Cow::Borrowed(_) = path {
        // Nothing from the URI went into the path.
        return Some(path);
    }
    let t = template.as_bytes();
    let mut at = next_reference(t, 0);
    while let Some(i) = at {
        let cap = captures
            .get((t[i + 1] - b'0') as usize)
            .copied()
            .flatten()
            .unwrap_or(b"");
        if cap.contains(&0) || cap.contains(&b'\\') {
            return None;
        }
        if (i == 0 || t[i - 1] == b'/') && cap.first() == Some(&b'/') {
            return None;
        }
        at = next_reference(t, i + 2);
    }
    let dots = |p: &[u8]| p.split(|&b| b == b'/').filter(|s| *s == b"..").count();
    (dots(path.as_bytes()) <= dots(t)).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing_matches_mod_lua() {
        assert_eq!(parse_scope("once", None, None), Ok(Scope::Once));
        assert_eq!(parse_scope("thread", Some("5"), None), Ok(Scope::Thread));
        assert_eq!(
            parse_scope("server", None, None),
            Ok(Scope::Server { min: 1, max: 1 })
        );
        assert_eq!(
            parse_scope("server", Some("0"), Some("0")),
            Ok(Scope::Server { min: 1, max: 1 })
        );
        assert_eq!(
            parse_scope("server", Some("3"), Some("2")),
            Ok(Scope::Server { min: 3, max: 3 })
        );
        assert_eq!(
            parse_scope("server", Some("2"), Some("8x")),
            Ok(Scope::Server { min: 2, max: 8 })
        );
        let err = parse_scope("Thread", None, None).unwrap_err();
        assert_eq!(
            err,
            "Invalid value for LuaScope, 'Thread', acceptable values are: 'once', 'request', 'conn', 'thread', 'server'"
        );
    }

    #[test]
    fn codecache_and_inherit_are_case_insensitive() {
        assert_eq!(parse_codecache("STAT"), Ok(CodeCache::Stat));
        assert_eq!(parse_codecache("Never"), Ok(CodeCache::Never));
        assert!(parse_codecache("sometimes")
            .unwrap_err()
            .starts_with("LuaCodeCache type of 'sometimes'"));
        assert_eq!(parse_inherit("Parent-Last"), Ok(Inherit::ParentLast));
        assert!(parse_inherit("x")
            .unwrap_err()
            .contains("'none', 'parent-first', and 'parent-last'"));
    }

    #[test]
    fn atoi_is_c_like() {
        assert_eq!(atoi("12"), 12);
        assert_eq!(atoi(" 7z"), 7);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("-3"), -3);
    }

    fn promise() -> MergeInputsOutlive {
        MergeInputsOutlive::for_tests()
    }

    fn list<T>(v: Vec<T>) -> ConfRef<Vec<T>> {
        ConfRef::new(Box::new(v))
    }

    #[test]
    fn inherit_orders_lists() {
        let (p, c, m) = (list(vec![1, 2]), list(vec![3]), promise());
        assert_eq!(
            *inherit_list(Inherit::ParentFirst, &p, &c, &m),
            vec![1, 2, 3]
        );
        assert_eq!(
            *inherit_list(Inherit::ParentLast, &p, &c, &m),
            vec![3, 1, 2]
        );
        assert_eq!(*inherit_list(Inherit::None, &p, &c, &m), vec![3]);
        let empty = list(vec![]);
        // One side adding nothing: the result is the other side's list itself, not a copy.
        assert!(std::ptr::eq(
            &*inherit_list(Inherit::ParentFirst, &p, &empty, &m),
            &*p
        ));
        assert!(std::ptr::eq(
            &*inherit_list(Inherit::ParentLast, &empty, &c, &m),
            &*c
        ));
        // A copy owns its value.
        let copy = inherit_list(Inherit::None, &p, &c, &m).clone();
        drop(c);
        assert_eq!(*copy, vec![3]);
    }

    #[test]
    fn hook_lists_merge_per_phase_and_slot() {
        let spec = |f: &str| HookSpec {
            code: HookCode::File(ScriptFile::new(f.into())),
            function: Some("h".into()),
        };
        let mut parent = HookTable::default();
        parent.push(Phase::TranslateName, Slot::Middle, spec("p"));
        parent.push(Phase::Fixups, Slot::Middle, spec("pf"));
        let mut child = HookTable::default();
        child.push(Phase::TranslateName, Slot::Middle, spec("c"));
        child.push(Phase::TranslateName, Slot::Early, spec("ce"));
        let (p, c, m) = (
            ConfRef::new(Box::new(parent)),
            ConfRef::new(Box::new(child)),
            promise(),
        );
        let names = |t: &HookTable, ph, sl| -> Vec<String> {
            t.get(ph, sl)
                .iter()
                .map(|s| match &s.code {
                    HookCode::File(f) => f.as_str().to_string(),
                    HookCode::Inline(_) => "inline".into(),
                })
                .collect()
        };
        let first = HookTable::merge(Inherit::ParentFirst, &p, &c, &m);
        assert_eq!(
            names(&first, Phase::TranslateName, Slot::Middle),
            ["p", "c"]
        );
        assert_eq!(names(&first, Phase::TranslateName, Slot::Early), ["ce"]);
        assert_eq!(names(&first, Phase::Fixups, Slot::Middle), ["pf"]);
        let last = HookTable::merge(Inherit::ParentLast, &p, &c, &m);
        assert_eq!(names(&last, Phase::TranslateName, Slot::Middle), ["c", "p"]);
        let none = HookTable::merge(Inherit::None, &p, &c, &m);
        assert!(none.get(Phase::Fixups, Slot::Middle).is_empty());
        assert_eq!(Slot::parse(Some("LATE")), Ok(Slot::Late));
        assert_eq!(
            Slot::parse(Some("x")),
            Err("Third argument must be 'early' or 'late'".into())
        );
    }

    #[test]
    fn merge_takes_child_scalars_else_parent() {
        let parent = DirConfig {
            scope: Some(Scope::Thread),
            codecache: Some(CodeCache::Never),
            ..Default::default()
        };
        let child = DirConfig {
            codecache: Some(CodeCache::Forever),
            ..Default::default()
        };
        let m = DirConfig::merge(&parent, &child, &promise());
        assert_eq!(m.scope(), Scope::Thread);
        assert_eq!(m.codecache(), CodeCache::Forever);
        assert_eq!(DirConfig::default().scope(), Scope::Once);
        assert_eq!(DirConfig::default().codecache(), CodeCache::Stat);
        assert_eq!(DirConfig::default().inherit(), Inherit::ParentFirst);
    }

    #[test]
    fn munge_path_replaces_dot_entry_and_appends() {
        let d = "/usr/share/lua/5.4/?.lua;./?.lua;./?/init.lua";
        assert_eq!(
            munge_path(d, "./?.lua", "/srv/app", &["/lib/?.lua".into()]),
            "/usr/share/lua/5.4/?.lua;/srv/app/?.lua;./?/init.lua;/lib/?.lua"
        );
        assert_eq!(munge_path("./?.so", "./?.so", "/a/", &[]), "/a/?.so;");
    }

    #[test]
    fn interpolation_follows_mod_lua() {
        let caps: Vec<Option<&[u8]>> = vec![Some(b"/x_y"), Some(b"x"), None];
        assert_eq!(interpolate("/h/$1.lua", &caps), "/h/x.lua");
        assert_eq!(interpolate("handle_$2", &caps), "handle_");
        assert_eq!(interpolate("$x$", &caps), "$x$");
        assert_eq!(interpolate("$9", &caps), "");
        assert_eq!(interpolate("$$1$", &caps), "$x$");
        assert_eq!(interpolate("a$0b$1c$", &caps), "a/x_ybxc$");
        assert!(matches!(
            interpolate("/fixed.lua", &caps),
            Cow::Borrowed("/fixed.lua")
        ));
    }

    #[test]
    fn traversal_through_captures_is_refused() {
        let c = |s: &'static [u8]| -> Vec<Option<&'static [u8]>> { vec![None, Some(s)] };
        let capture_path_is_safe =
            |t: &str, caps: &[Option<&[u8]>]| mapped_script_path(t, caps).is_some();
        assert!(capture_path_is_safe("/srv/$1.lua", &c(b"hello")));
        assert!(capture_path_is_safe("/srv/$1.lua", &c(b"a/b")));
        assert!(capture_path_is_safe("/srv/x$1.lua", &c(b"..")));
        assert!(!capture_path_is_safe("/srv/$1.lua", &c(b"../etc/passwd")));
        assert!(!capture_path_is_safe("/srv/$1", &c(b"..")));
        assert!(!capture_path_is_safe("/srv/$1.lua", &c(b"a/../../b")));
        assert!(!capture_path_is_safe("/srv/$1.lua", &c(b"/etc/x")));
        assert!(!capture_path_is_safe("$1.lua", &c(b"/etc/x")));
        assert!(!capture_path_is_safe("/srv/$1.lua", &c(b"a\0b")));
        assert!(capture_path_is_safe("/srv/fixed.lua", &c(b"../../")));
    }
}
