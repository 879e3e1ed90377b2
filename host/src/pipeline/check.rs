//! Semantic checks of a parsed pipeline (everything that needs no outside knowledge), collecting
//! every error with its position; also compiles `when` conditions and limits for resolving.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::diag::{Diagnostic, Diagnostics, did_you_mean, list};
use super::expr::{self, Expr};
use super::paths::{self, PathProblem};
use super::resolve::Limits;
use super::spec::{
    Access, BackupSpec, CommandSpec, ConfigTable, ConfigValue, LimitsSpec, Located, MountRoot,
    MountSpec, ParamSpec, ParamType, StepSpec,
};
use super::template::{self, DB_REFS, KNOWN_REFS, Piece, Ref};
use super::units;
use super::{Pipeline, Section};

/// A param's type with what it needs for type checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParamKind {
    Bool,
    Int,
    String,
    Enum(Vec<String>),
}

/// What resolving needs from a checked pipeline, per section and step index.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) sections: [Vec<CompiledStep>; Section::ALL.len()],
}

#[derive(Debug, Default)]
pub(crate) struct CompiledStep {
    pub(crate) when: Option<Expr>,
    pub(crate) limits: Limits,
}

/// Lowercase letter or digit first, then lowercase letters, digits and `-`; at most 63.
fn is_id(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_param_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.contains("..")
        && !s.ends_with('.')
        && s != "true"
        && s != "false"
}

fn is_program(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Variables the host sets for every program itself, after the granted ones.
const RESERVED_ENV: &[&str] = &["PATH", "LANG", "HOME", "TMPDIR"];

/// A file name in the host's `secrets_dir`: no `/`, no leading `.`.
pub(crate) fn is_secret_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

const ID_HINT: &str =
    "use lowercase letters, digits and `-`, starting with a letter or digit (at most 63 chars)";

pub(crate) fn param_kinds(p: &Pipeline) -> BTreeMap<String, ParamKind> {
    p.spec
        .params
        .iter()
        .map(|(name, spec)| (name.get().clone(), param_kind(spec)))
        .collect()
}

fn param_kind(spec: &ParamSpec) -> ParamKind {
    match spec.kind.get() {
        ParamType::Bool => ParamKind::Bool,
        ParamType::Int => ParamKind::Int,
        ParamType::String => ParamKind::String,
        ParamType::Enum => {
            let mut values: Vec<String> = Vec::new();
            for v in spec.values.iter().flat_map(|v| v.get().iter()) {
                if !values.contains(v.get()) {
                    values.push(v.get().clone());
                }
            }
            ParamKind::Enum(values)
        }
    }
}

/// Whether a templated string may hold expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exprs {
    /// Config strings.
    Allowed,
    /// Mount paths: only references.
    NotInMountPath,
    /// Command argument patterns: only references, also the customer's database.
    CommandArg,
}

/// Which plugins exist, and the hint listing them; `None` skips that check.
pub(crate) type Plugins<'p> = Option<(&'p dyn Fn(&str) -> bool, &'p str)>;

/// Checks a pipeline, reporting every error; on success returns what resolving needs.
pub(crate) fn check(p: &Pipeline, plugins: Plugins<'_>) -> Result<Compiled, Diagnostics> {
    let mut cx = Checker {
        p,
        plugins,
        diags: Vec::new(),
        kinds: param_kinds(p),
    };
    let compiled = cx.pipeline();
    // File order: the pipeline first, then the overlays applied to it.
    cx.diags.sort_by_key(|(src, start, _)| (*src, *start));
    match Diagnostics::from_vec(cx.diags.into_iter().map(|(_, _, d)| d).collect()) {
        Some(diags) => Err(diags),
        None => Ok(compiled),
    }
}

struct Checker<'a> {
    p: &'a Pipeline,
    plugins: Plugins<'a>,
    /// (source index, byte offset, diagnostic), for sorting.
    diags: Vec<(usize, usize, Diagnostic)>,
    kinds: BTreeMap<String, ParamKind>,
}

impl Checker<'_> {
    fn push_span(&mut self, src: usize, span: Range<usize>, message: String, hint: String) {
        let diag = self.p.sources[src]
            .error(span.clone(), message)
            .with_hint(hint);
        self.diags.push((src, span.start, diag));
    }

    fn at<T>(&mut self, loc: &Located<T>, message: impl Into<String>, hint: impl Into<String>) {
        self.push_span(loc.src(), loc.span(), message.into(), hint.into());
    }

    /// An error at `range` inside the string value at `loc`.
    fn inside(
        &mut self,
        src: usize,
        span: &Range<usize>,
        value: &str,
        range: Range<usize>,
        message: String,
        hint: String,
    ) {
        let inner = self.p.sources[src].inner_span(span, value, range);
        self.push_span(src, inner, message, hint);
    }

    fn line_of<T>(&self, loc: &Located<T>) -> usize {
        self.p.sources[loc.src()].error(loc.span(), "").line
    }

    fn pipeline(&mut self) -> Compiled {
        let name = &self.p.spec.name;
        if !is_id(name) {
            self.at(
                name,
                format!("invalid pipeline name `{}`", name.get()),
                ID_HINT,
            );
        }
        for (name, spec) in self.p.spec.params.iter() {
            self.param(name, spec);
        }
        if let Some(backup) = &self.p.spec.backup {
            self.backup_table(backup);
        }
        let mut first_use: HashMap<&str, &Located<String>> = HashMap::new();
        let mut sections: [Vec<CompiledStep>; Section::ALL.len()] = Default::default();
        // Name on_success only where it is used, to keep the hint short.
        let unique_across = if self.p.spec.on_success.is_empty() {
            "steps, on_failure and finally"
        } else {
            "steps, on_success, on_failure and finally"
        };
        for (section, compiled) in Section::ALL.into_iter().zip(&mut sections) {
            let steps = self.p.section(section);
            self.groups(steps);
            for step in steps {
                if let Some(first) = first_use.get(step.id.as_str()) {
                    let line = self.line_of(first);
                    self.at(
                        &step.id,
                        format!("duplicate step id `{}`", step.id.get()),
                        format!("step ids must be unique across {unique_across}; it is first used at line {line}"),
                    );
                } else {
                    first_use.insert(step.id.as_str(), &step.id);
                }
                compiled.push(self.step(step));
            }
        }
        Compiled { sections }
    }

    fn param(&mut self, name: &Located<String>, spec: &ParamSpec) {
        if !is_param_name(name) {
            self.at(
                name,
                format!("invalid param name `{}`", name.get()),
                "start with a letter or `_`, then use letters, digits, `_`, `-` or single dots, e.g. `include.logs`",
            );
        }
        let kind = *spec.kind.get();
        match (&spec.values, kind) {
            (Some(values), ParamType::Bool | ParamType::Int | ParamType::String) => self.at(
                values,
                "`values` is only allowed on enum params",
                "remove it, or set type = \"enum\"",
            ),
            (None, ParamType::Enum) => self.at(
                &spec.kind,
                format!("enum param `{}` has no `values`", name.get()),
                "list them, e.g. values = [\"fast\", \"custom\"]",
            ),
            (Some(values), ParamType::Enum) => {
                if values.is_empty() {
                    self.at(
                        values,
                        format!("enum param `{}` has no values", name.get()),
                        "list at least one value",
                    );
                }
                for (i, value) in values.iter().enumerate() {
                    if value.is_empty() {
                        self.at(
                            value,
                            "enum values must not be empty",
                            "remove the empty string",
                        );
                    } else if values[..i].iter().any(|v| v.get() == value.get()) {
                        self.at(
                            value,
                            format!("value `{}` is listed twice", value.get()),
                            "remove one of them",
                        );
                    }
                }
            }
            (None, _) => {}
        }
        if let Some(default) = &spec.default
            && let Err((message, hint)) = check_default(name, &param_kind(spec), default.get())
        {
            self.at(default, message, hint);
        }
    }

    /// Groups must be contiguous: their steps run together as one stage.
    fn groups(&mut self, steps: &[StepSpec]) {
        let mut closed: HashMap<&str, &Located<String>> = HashMap::new();
        let mut current: Option<&Located<String>> = None;
        for step in steps {
            let group = step.group.as_ref();
            if let (Some(g), Some(c)) = (group, current)
                && g.get() == c.get()
            {
                continue;
            }
            if let Some(c) = current.take() {
                closed.insert(c.as_str(), c);
            }
            let Some(g) = group else { continue };
            if !is_id(g) {
                self.at(g, format!("invalid group name `{}`", g.get()), ID_HINT);
            }
            if let Some(first) = closed.get(g.as_str()) {
                let line = self.line_of(first);
                self.at(
                    g,
                    format!("group `{}` is split by other steps", g.get()),
                    format!("steps of a group run together, so list them next to each other (the group starts at line {line})"),
                );
            }
            current = Some(g);
        }
    }

    fn step(&mut self, step: &StepSpec) -> CompiledStep {
        let mut compiled = CompiledStep::default();
        if !is_id(&step.id) {
            self.at(
                &step.id,
                format!("invalid step id `{}`", step.id.get()),
                ID_HINT,
            );
        }
        if !is_id(&step.plugin) {
            self.at(
                &step.plugin,
                format!("invalid plugin id `{}`", step.plugin.get()),
                "a plugin id is the `.wasm` file stem: lowercase letters, digits and `-`",
            );
        } else if let Some((known, hint)) = self.plugins
            && !known(&step.plugin)
        {
            self.at(
                &step.plugin,
                format!("unknown plugin `{}`", step.plugin.get()),
                hint,
            );
        }
        if let Some(sha) = &step.sha256
            && (sha.len() != 64 || !sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
        {
            self.at(
                sha,
                "sha256 must be 64 lowercase hex digits",
                "compute it with `sha256sum <plugin>.wasm`",
            );
        }
        if let Some(when) = &step.when {
            compiled.when = self.when(when);
        }
        if let Some(config) = &step.config {
            self.config(config);
        }
        let mut guests: Vec<&Located<String>> = Vec::new();
        for mount in &step.mounts {
            self.mount(step, mount, &mut guests);
        }
        for command in &step.commands {
            self.command(command);
        }
        for http in &step.http {
            if let Err(problem) = super::HttpGrant::parse(http.origin.get()) {
                self.at(
                    &http.origin,
                    format!("invalid HTTP origin `{}`: {problem}", http.origin.get()),
                    "write e.g. `http://127.0.0.1:*` (any port of that host) or `http://127.0.0.1:3000`",
                );
            }
        }
        if let Some(limits) = &step.limits {
            compiled.limits = self.limits(limits);
        }
        compiled
    }

    fn when(&mut self, when: &Located<String>) -> Option<Expr> {
        let (src, span) = (when.src(), when.span());
        let errors = match expr::parse(when) {
            Ok(e) => {
                let errors = expr::check(&e, &self.kinds);
                if errors.is_empty() {
                    return Some(e);
                }
                errors
            }
            Err(e) => vec![e],
        };
        for e in errors {
            self.inside(
                src,
                &span,
                when,
                e.span,
                e.message,
                e.hint.unwrap_or_default(),
            );
        }
        None
    }

    /// Checks the pieces of a templated string (references, and expressions where `exprs`
    /// allows them); returns the pieces when all are fine.
    fn template(
        &mut self,
        src: usize,
        span: &Range<usize>,
        value: &str,
        exprs: Exprs,
    ) -> Option<Vec<Piece>> {
        let pieces = match template::parse(value) {
            Ok(pieces) => pieces,
            Err(e) => {
                self.inside(src, span, value, e.span, e.message, e.hint);
                return None;
            }
        };
        let mut ok = true;
        for piece in &pieces {
            let errors = match piece {
                Piece::Text(_) => continue,
                Piece::Ref(name, range) => match self.reference(name, exprs == Exprs::CommandArg) {
                    Ok(()) => continue,
                    Err((message, hint)) => vec![(range.clone(), message, hint)],
                },
                Piece::Expr {
                    text,
                    at,
                    span: range,
                } => match exprs {
                    Exprs::Allowed => self.template_expr(text, *at),
                    Exprs::NotInMountPath | Exprs::CommandArg => vec![(
                        range.clone(),
                        format!(
                            "mount paths and command patterns cannot hold expressions: `{}`",
                            &value[range.clone()]
                        ),
                        format!(
                            "they take only references ({KNOWN_REFS}); to pick by a condition, write one step per case with `when`"
                        ),
                    )],
                },
            };
            for (range, message, hint) in errors {
                ok = false;
                self.inside(src, span, value, range, message, hint);
            }
        }
        ok.then_some(pieces)
    }

    /// Checks one reference (the text between the braces).
    fn reference(&self, name: &str, db_ok: bool) -> Result<(), (String, String)> {
        match Ref::parse(name) {
            Some(Ref::CustomerDb(_)) if !db_ok => Err((
                format!("`{name}` is only allowed in command argument patterns"),
                "the host fills it in from the customer's DATABASE_URL to fix a command's argument, e.g. `--host={{customer.db.host}}`".to_owned(),
            )),
            Some(Ref::Param(param)) if !self.kinds.contains_key(param) => {
                let known = list(self.kinds.keys());
                let hint = match did_you_mean(param, self.kinds.keys().map(String::as_str)) {
                    Some(best) => format!("did you mean `params.{best}`? known params: {known}"),
                    None if self.kinds.is_empty() => "this pipeline has no params".to_owned(),
                    None => format!("known params: {known}"),
                };
                Err((format!("unknown param `{param}` in template"), hint))
            }
            Some(_) => Ok(()),
            None => {
                let mut fixed = vec![
                    "customer.id",
                    "customer.domain",
                    "customer.path.backend",
                    "customer.path.admin",
                    "customer.path.store",
                    "customer.path.uploads",
                    "run.id",
                    "run.timestamp",
                ];
                if db_ok {
                    fixed.extend(DB_REFS.split(", "));
                }
                let refs = if db_ok {
                    format!("{KNOWN_REFS}, {DB_REFS}")
                } else {
                    KNOWN_REFS.to_owned()
                };
                let hint = match did_you_mean(name, fixed.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`? references: {refs}"),
                    None => format!("references: {refs}"),
                };
                Err((format!("unknown template reference `{name}`"), hint))
            }
        }
    }

    /// Parses and type-checks an expression template like a `when` condition; the errors' spans
    /// are shifted by `at`, where the expression starts in the string.
    fn template_expr(&self, text: &str, at: usize) -> Vec<(Range<usize>, String, String)> {
        let shift = |span: Range<usize>| at + span.start..at + span.end;
        let e = match expr::parse(text) {
            Ok(e) => e,
            Err(e) => return vec![(shift(e.span), e.message, e.hint.unwrap_or_default())],
        };
        // A bare non-bool param: its value was likely meant, which a reference gives.
        if let Expr::Param(name, span) = &e
            && let Some(kind) = self.kinds.get(name)
        {
            let (is, example) = match kind {
                ParamKind::Bool => ("", String::new()),
                ParamKind::Int => ("an int", format!("{name} == 1")),
                ParamKind::String => ("a string", format!("{name} == 'value'")),
                ParamKind::Enum(values) => (
                    "an enum",
                    format!("{name} == '{}'", values.first().map_or("", String::as_str)),
                ),
            };
            if !is.is_empty() {
                return vec![(
                    shift(span.clone()),
                    format!(
                        "`{{{{ {name} }}}}` is an expression, and param `{name}` is {is}, not a bool"
                    ),
                    format!(
                        "write `{{{{params.{name}}}}}` for its value, or compare it, e.g. `{{{{ {example} }}}}`"
                    ),
                )];
            }
        }
        expr::check(&e, &self.kinds)
            .into_iter()
            .map(|e| (shift(e.span), e.message, e.hint.unwrap_or_default()))
            .collect()
    }

    fn config(&mut self, table: &ConfigTable) {
        for (_, value) in &table.0 {
            self.config_value(value);
        }
    }

    fn config_value(&mut self, value: &Located<ConfigValue>) {
        match value.get() {
            ConfigValue::String(s) => {
                self.template(value.src(), &value.span(), s, Exprs::Allowed);
            }
            ConfigValue::Float(f) if !f.is_finite() => self.at(
                value,
                format!("config value `{f}` cannot be handed to the plugin as JSON"),
                "use a finite number, or a string",
            ),
            ConfigValue::Array(items) => items.iter().for_each(|v| self.config_value(v)),
            ConfigValue::Table(table) => self.config(table),
            _ => {}
        }
    }

    fn mount<'s>(
        &mut self,
        step: &StepSpec,
        mount: &'s MountSpec,
        guests: &mut Vec<&'s Located<String>>,
    ) {
        let guest = &mount.guest;
        match paths::check_guest(guest) {
            Err(problem) => self.at(guest, problem.message, problem.hint),
            Ok(()) => {
                if guests.iter().any(|earlier| earlier.get() == guest.get()) {
                    self.at(
                        guest,
                        format!(
                            "guest path `{}` is mounted twice in step `{}`",
                            guest.get(),
                            step.id.get()
                        ),
                        "keep one mount per guest path",
                    );
                } else if let Some((inner, outer)) =
                    guests.iter().find_map(|earlier| nested(guest, earlier))
                {
                    self.at(
                        guest,
                        format!(
                            "mount `{inner}` is nested inside mount `{outer}` of the same step"
                        ),
                        "mount them at separate guest paths, or keep only the outer one",
                    );
                }
                guests.push(guest);
            }
        }
        if *mount.from.get() == MountRoot::Releases && mount.access == Access::Rw {
            self.at(
                &mount.from,
                format!(
                    "mount `{}` is from the release catalog, which is read-only",
                    guest.get()
                ),
                "remove `access = \"rw\"`: steps read releases.json and packages, they never change them",
            );
        }
        if *mount.from.get() == MountRoot::Backup && self.p.spec.output.is_none() {
            self.at(
                &mount.from,
                format!(
                    "mount `{}` is from the backup folder, but the pipeline writes no backup",
                    guest.get()
                ),
                "add `output = \"backup\"` at the top of the pipeline (before any table) so the run creates a new backup folder, or mount from \"customer\" or \"work\"",
            );
        }
        let path = &mount.path;
        if let Some(pieces) = self.template(path.src(), &path.span(), path, Exprs::NotInMountPath) {
            // Refs stand for one normal component here; their values are checked again at resolve.
            let sample = template::render(&pieces, &|_| "x".to_owned(), &|_| false);
            if let Err(problem) = paths::check_relative(&sample, paths::is_literal_root(path)) {
                let folder = mount.from.folder_name();
                let described = match problem {
                    PathProblem::Empty => "is empty".to_owned(),
                    ref other => other.describe(folder),
                };
                self.at(
                    path,
                    format!("mount path `{}` {described}", paths::show(path)),
                    problem.hint(folder),
                );
            }
        }
        if let Some(create) = &mount.create
            && *create.get()
            && mount.access == Access::Ro
        {
            self.at(
                create,
                "`create = true` needs `access = \"rw\"`",
                "a read-only mount cannot create its folder: set access = \"rw\", or remove `create`",
            );
        }
    }

    fn backup_table(&mut self, backup: &BackupSpec) {
        let located = backup.complete_after.as_ref().or(backup.pin.as_ref());
        if self.p.spec.output.is_none()
            && let Some(at) = located
        {
            self.at(
                at,
                "`[backup]` settings, but the pipeline writes no backup",
                "add `output = \"backup\"` at the top of the pipeline, or remove the [backup] table",
            );
        }
        if let Some(step) = &backup.complete_after
            && !self.p.spec.steps.iter().any(|s| s.id.get() == step.get())
        {
            let ids: Vec<&str> = self.p.spec.steps.iter().map(|s| s.id.as_str()).collect();
            self.at(
                step,
                format!(
                    "`complete_after` names `{}`, which is not a step of `steps`",
                    step.get()
                ),
                format!("name one of: {}", ids.join(", ")),
            );
        }
        if let Some(pin) = &backup.pin {
            if pin.trim().is_empty() {
                self.at(
                    pin,
                    "empty pin reason",
                    "say why the backup is kept, e.g. \"pre-upgrade {{params.targetVersion}}\"",
                );
            }
            let _ = self.template(pin.src(), &pin.span(), pin, Exprs::Allowed);
        }
    }

    fn command(&mut self, command: &CommandSpec) {
        let program = &command.program;
        if !is_program(program) {
            self.at(
                program,
                format!("invalid program name `{}`", program.get()),
                "give a bare program name such as `pg_dump`: the host looks it up itself",
            );
        }
        for arg in &command.args {
            // `{{customer.domain}}` and other references may appear in patterns; the glob is
            // checked on a sample value (the real one is checked again when a call is matched).
            let sample;
            let pattern: &str = if arg.contains("{{") {
                match self.template(arg.src(), &arg.span(), arg, Exprs::CommandArg) {
                    Some(pieces) => {
                        sample = template::render(&pieces, &|_| "x".to_owned(), &|_| false);
                        &sample
                    }
                    None => continue,
                }
            } else {
                arg
            };
            if arg.is_empty() {
                self.at(
                    arg,
                    "empty argument pattern",
                    "write a glob such as `-Fc` or `/out/*`, or remove it",
                );
            } else if let Err(e) = globset::Glob::new(pattern) {
                self.at(
                    arg,
                    format!("invalid argument pattern: {}", e.kind()),
                    "patterns are globs: `*` matches any text, `?` one char, `[abc]` one of the chars",
                );
            }
        }
        for (key, grants, example) in [
            (
                "net",
                &command.net,
                "`127.0.0.1:5432`, `db.internal:5432` or `[::1]:5432`",
            ),
            ("bind", &command.bind, "`127.0.0.1:3000` or `[::1]:3000`"),
        ] {
            for grant in grants {
                if key == "net"
                    && let Some(param) = super::NetGrant::param_ref(grant)
                {
                    self.net_param(grant, param);
                    continue;
                }
                if let Err(problem) = super::NetGrant::parse(grant) {
                    self.at(
                        grant,
                        format!("invalid `{key}` grant `{}`: {problem}", grant.get()),
                        format!(
                            "write `HOST:PORT` with one literal port per entry, e.g. {example}"
                        ),
                    );
                }
            }
        }
        for name in command.env.iter().chain(&command.inherit) {
            if !is_env_name(name) {
                self.at(
                    name,
                    format!("invalid environment variable name `{}`", name.get()),
                    "use uppercase letters, digits and `_`, e.g. `PGPASSWORD`",
                );
            }
        }
        for (var, secret) in command.secrets.iter() {
            if !is_env_name(var) {
                self.at(
                    var,
                    format!("invalid environment variable name `{}`", var.get()),
                    "use uppercase letters, digits and `_`, e.g. `RESTIC_PASSWORD`",
                );
            } else if RESERVED_ENV.contains(&var.as_str()) {
                self.at(
                    var,
                    format!("`{}` is set by the host for every program", var.get()),
                    format!(
                        "a secret goes in another variable (the host sets {})",
                        RESERVED_ENV.join(", ")
                    ),
                );
            } else if command
                .env
                .iter()
                .chain(&command.inherit)
                .any(|n| n.get() == var.get())
            {
                self.at(
                    var,
                    format!("`{}` is both a secret and granted in `env` or `inherit`", var.get()),
                    "remove it from `env`/`inherit`: the step must not be able to set or see a secret's variable",
                );
            }
            if !is_secret_name(secret) {
                self.at(
                    secret,
                    format!("invalid secret name `{}`", secret.get()),
                    "name a file in the host's secrets_dir: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 63), e.g. \"offsite\"",
                );
            }
        }
    }

    /// A `net` grant written `{{params.NAME}}`: a string param whose default, when set, is
    /// `HOST:PORT`.
    fn net_param(&mut self, grant: &Located<String>, param: &str) {
        match self.kinds.get(param) {
            Some(ParamKind::String) => {}
            Some(_) => {
                return self.at(
                    grant,
                    format!("`net` grant `{}`: param `{param}` is not a string param", grant.get()),
                    "a `net` grant takes a string param holding `HOST:PORT` (or empty: no destination)",
                );
            }
            None => {
                return self.at(
                    grant,
                    format!("`net` grant `{}`: no param `{param}`", grant.get()),
                    format!("declare it: [params.\"{param}\"] type = \"string\", default = \"\""),
                );
            }
        }
        let default = self
            .p
            .spec
            .params
            .get(param)
            .and_then(|spec| spec.default.clone());
        if let Some(default) = default
            && let Some(value) = default.get().as_str()
            && !value.is_empty()
            && let Err(problem) = super::NetGrant::parse(value)
        {
            self.at(
                &default,
                format!("param `{param}` is granted as `net`, but its default `{value}` is not `HOST:PORT`: {problem}"),
                "write e.g. \"10.0.0.5:8000\", or \"\" for no destination",
            );
        }
    }

    fn limits(&mut self, limits: &LimitsSpec) -> Limits {
        let mut out = Limits::default();
        if let Some(memory) = &limits.memory {
            match units::parse_size(memory) {
                Ok(bytes) => out.memory_bytes = Some(bytes),
                Err(problem) => self.at(memory, problem.message, problem.hint),
            }
        }
        if let Some(timeout) = &limits.timeout {
            match units::parse_duration(timeout) {
                Ok(d) => out.timeout = Some(d),
                Err(problem) => self.at(timeout, problem.message, problem.hint),
            }
        }
        out
    }
}

/// `(inner, outer)` when one guest path lies inside the other.
fn nested<'s>(a: &'s str, b: &'s str) -> Option<(&'s str, &'s str)> {
    if paths::guest_within(a, b) {
        Some((a, b))
    } else if paths::guest_within(b, a) {
        Some((b, a))
    } else {
        None
    }
}

/// Whether a default (from the pipeline or an overlay) fits the param.
pub(crate) fn check_default(
    name: &str,
    kind: &ParamKind,
    value: &toml::Value,
) -> Result<(), (String, String)> {
    let found = value.type_str();
    let wrong = |expected: &str, example: &str| {
        Err((
            format!("default of param `{name}` must be {expected}, found {found}"),
            format!("write e.g. default = {example}"),
        ))
    };
    match (kind, value) {
        (ParamKind::Bool, toml::Value::Boolean(_))
        | (ParamKind::Int, toml::Value::Integer(_))
        | (ParamKind::String, toml::Value::String(_)) => Ok(()),
        (ParamKind::Bool, _) => wrong("a bool", "false"),
        (ParamKind::Int, _) => wrong("an integer", "5"),
        (ParamKind::String, _) => wrong("a string", "\"text\""),
        (ParamKind::Enum(values), toml::Value::String(s)) if values.contains(s) => Ok(()),
        (ParamKind::Enum(values), toml::Value::String(s)) => Err((
            format!("default `{s}` of param `{name}` is not one of its values"),
            match did_you_mean(s, values.iter().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`? values: {}", list(values)),
                None => format!("values: {}", list(values)),
            },
        )),
        (ParamKind::Enum(values), _) => Err((
            format!("default of param `{name}` must be one of its values, found {found}"),
            format!("values: {}", list(values)),
        )),
    }
}
