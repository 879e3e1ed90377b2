//! The pipeline and tier-overlay file formats: serde types that keep TOML positions for
//! diagnostics, and from which the JSON Schema for editors is derived.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A value with its byte span in the file it came from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    value: T,
    span: Range<usize>,
    /// Index of the source in the owning [`super::Pipeline`]: 0 is the pipeline file, higher
    /// numbers are overlays applied to it.
    src: usize,
}

impl<T> Located<T> {
    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Byte span in its source file.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Takes the value out.
    pub fn into_inner(self) -> T {
        self.value
    }

    pub(crate) fn src(&self) -> usize {
        self.src
    }

    pub(crate) fn set_src(&mut self, src: usize) {
        self.src = src;
    }
}

impl<T> Located<T> {
    /// A value with its span in the first source (the file being read).
    pub(crate) fn new(value: T, span: Range<usize>) -> Self {
        Located {
            value,
            span,
            src: 0,
        }
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(d)?;
        Ok(Located {
            span: spanned.span(),
            value: spanned.into_inner(),
            src: 0,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A TOML table read in file order, keys with positions.
#[derive(Debug, Clone)]
pub struct OrderedMap<V>(pub Vec<(Located<String>, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    /// Looks a key up.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k.get() == key).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.0
            .iter_mut()
            .find(|(k, _)| k.get() == key)
            .map(|(_, v)| v)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&Located<String>, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.get().as_str())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Located<String>, V>()? {
                    entries.push(entry);
                }
                // toml hands tables over sorted by key; restore the file order.
                entries.sort_by_key(|(k, _)| k.span.start);
                Ok(OrderedMap(entries))
            }
        }
        d.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

impl<V: JsonSchema> JsonSchema for OrderedMap<V> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

/// A qodify pipeline: typed params and ordered steps, each step one call of a WASM plugin with
/// its grants.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name; in a pipelines folder it must equal the file name without `.toml`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"), length(max = 63))]
    pub name: Located<String>,
    /// What the pipeline does, shown by `plan`.
    #[serde(default)]
    pub description: Option<String>,
    /// What the run produces. `"backup"`: a new backup folder, created hidden and renamed into
    /// place only when every step succeeded; mounts reach it with `from = "backup"`. Absent: the
    /// run produces no backup.
    #[serde(default)]
    pub output: Option<Located<OutputKind>>,
    /// What a host crash in the middle of a run of this pipeline leaves to do. `"on_failure"`: the
    /// next start of `qodify-host serve` runs the `on_failure` and `finally` steps of the
    /// interrupted run (e.g. an upgrade's rollback) before the customer's next run. Absent: the
    /// run is only marked interrupted and its partial backup removed.
    #[serde(default)]
    pub recover: Option<Located<Recover>>,
    /// With `output = "backup"`: when the backup is complete and whether it is pinned.
    #[serde(default)]
    pub backup: Option<BackupSpec>,
    /// Typed params, set per run (`--param NAME=VALUE`). Names may contain dots:
    /// `[params."include.logs"]`.
    #[serde(default)]
    pub params: OrderedMap<ParamSpec>,
    /// The steps, run in order; consecutive steps with the same `group` run concurrently.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Steps run when every step succeeded, after the backup folder (with `output = "backup"`)
    /// was renamed into place; before `finally`.
    #[serde(default)]
    pub on_success: Vec<StepSpec>,
    /// Steps run when a step failed.
    #[serde(default)]
    pub on_failure: Vec<StepSpec>,
    /// Steps always run at the end.
    #[serde(default)]
    pub finally: Vec<StepSpec>,
}

/// What a run produces (the pipeline's `output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A new backup folder: the host creates it hidden (partial) and renames it into place only
    /// when every step succeeded.
    Backup,
}

/// What to do with a run that a host crash interrupted (the pipeline's `recover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Recover {
    /// Run the interrupted run's `on_failure` and `finally` steps when the host starts again.
    OnFailure,
}

/// The `[backup]` table of a pipeline with `output = "backup"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Complete the backup (check, rename into place) as soon as the stage holding this step
    /// succeeded, instead of after the last step: later steps (an upgrade) may fail without
    /// losing it. Must name a step of `steps`.
    #[serde(default)]
    pub complete_after: Option<Located<String>>,
    /// Pin the completed backup with this reason (templated like config strings), so retention
    /// and `DELETE` keep it until the pin is removed, e.g. `"pre-upgrade {{params.targetVersion}}"`.
    #[serde(default)]
    pub pin: Option<Located<String>>,
}

/// A typed param.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The param's type.
    #[serde(rename = "type")]
    pub kind: Located<ParamType>,
    /// The allowed values of an `enum` param (required there, non-empty, unique).
    #[serde(default)]
    pub values: Option<Located<Vec<Located<String>>>>,
    /// The value used when a run does not set the param; without it the param is required.
    #[serde(default)]
    #[schemars(with = "Option<DefaultSchema>")]
    pub default: Option<Located<toml::Value>>,
    /// What the param does, shown by `--help` and `plan`.
    #[serde(default)]
    pub description: Option<String>,
}

/// The type of a param.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// `true` or `false`.
    Bool,
    /// Any string.
    String,
    /// A 64-bit signed integer.
    Int,
    /// One of the strings listed in `values`.
    Enum,
}

impl ParamType {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Enum => "enum",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A param default: a bool, an integer or a string, matching the param's type.
#[allow(dead_code)] // only its schema is used
#[derive(JsonSchema)]
#[schemars(rename = "ParamDefault")]
#[serde(untagged)]
pub(crate) enum DefaultSchema {
    Bool(bool),
    Int(i64),
    String(String),
}

/// One call of one plugin, with its config, grants and limits.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique across `steps`, `on_success`, `on_failure` and `finally`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"), length(max = 63))]
    pub id: Located<String>,
    /// The plugin to run: the `.wasm` file stem.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub plugin: Located<String>,
    /// Pin of the plugin's `.wasm` content: 64 lowercase hex digits.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<Located<String>>,
    /// Run the step only when this condition over params holds, e.g.
    /// `include.logs && type == 'custom'`.
    #[serde(default)]
    pub when: Option<Located<String>>,
    /// Consecutive steps with the same group run concurrently; a group must be contiguous.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub group: Option<Located<String>>,
    /// What the step does, shown by `plan`.
    #[serde(default)]
    pub description: Option<String>,
    /// Handed to the plugin as JSON. Strings may use `{{customer.id}}`, `{{customer.domain}}`,
    /// `{{run.id}}`, `{{run.timestamp}}` and `{{params.NAME}}`.
    #[serde(default)]
    pub config: Option<ConfigTable>,
    /// File-system grants; without any the step sees no files at all.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Host programs the step may ask the host to run.
    #[serde(default)]
    pub commands: Vec<CommandSpec>,
    /// HTTP origins the step may send requests to (health checks); none by default.
    #[serde(default)]
    pub http: Vec<HttpSpec>,
    /// Memory and time limits.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
}

/// A folder of the customer or of the run, mapped into the guest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Absolute, normalised guest path (not `/`), e.g. `/src`.
    #[schemars(regex(pattern = r"^(/[^/]+)+$"))]
    pub guest: Located<String>,
    /// Which host folder `path` is inside.
    #[serde(default = "default_root")]
    pub from: Located<MountRoot>,
    /// Relative path inside `from`; `""` or `"."` is its root. Templated like config strings.
    pub path: Located<String>,
    /// Read-only (`ro`, the default) or read-write (`rw`).
    #[serde(default)]
    pub access: Access,
    /// Create the folder when it is missing (needs `access = "rw"`).
    #[serde(default)]
    pub create: Option<Located<bool>>,
    /// When the host folder is missing, skip the step instead of failing.
    #[serde(default)]
    pub optional: bool,
    /// Why the step needs this folder, shown by `plan`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `from` when absent; its empty span is never reported on, as only `from = "backup"` is.
fn default_root() -> Located<MountRoot> {
    Located {
        value: MountRoot::default(),
        span: 0..0,
        src: 0,
    }
}

/// As the bare value; lets the schema show `from`'s default.
impl Serialize for Located<MountRoot> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// The host folder a mount's path is relative to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountRoot {
    /// The customer's folder, `<customers_root>/<domain>/`.
    #[default]
    Customer,
    /// The run's private work folder.
    Work,
    /// The run's new backup folder (needs `output = "backup"`): hidden while the run's steps
    /// write it, renamed into place when all of them succeeded.
    Backup,
    /// The release catalog (`releases_dir` in the settings): `releases.json` and the release
    /// packages it names. Always read-only.
    Releases,
}

impl MountRoot {
    /// How messages name the folder.
    pub fn folder_name(self) -> &'static str {
        match self {
            MountRoot::Customer => "customer folder",
            MountRoot::Work => "work folder",
            MountRoot::Backup => "backup folder",
            MountRoot::Releases => "release catalog",
        }
    }
}

/// Mount access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read-only.
    #[default]
    Ro,
    /// Read-write.
    Rw,
}

/// A host program the step may ask the host to run.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Bare program name, looked up by the host, e.g. `pg_dump`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._+-]+$"))]
    pub program: Located<String>,
    /// Glob patterns; every argument of a call must match one of them. References such as
    /// `{{customer.domain}}` and `{{customer.db.host}}` (port, name, user: derived by the host
    /// from the customer's `DATABASE_URL`) stand for their value exactly, e.g.
    /// `--host={{customer.db.host}}`.
    #[serde(default)]
    pub args: Vec<Located<String>>,
    /// Names of environment variables the step may set for the program.
    #[serde(default)]
    pub env: Vec<Located<String>>,
    /// Names of the host's own environment variables passed to the program unchanged when set
    /// (e.g. `PM2_HOME`, so `pm2` talks to the host's PM2 daemon). The step never sees them.
    #[serde(default)]
    pub inherit: Vec<Located<String>>,
    /// TCP destinations the program may connect to, as `HOST:PORT`: a DNS name, an IPv4 address
    /// or `[IPv6]`, and a port from 1 to 65535 (no `*`), e.g. `127.0.0.1:5432`. Without `net` the
    /// program cannot open any TCP connection. The program runs in a Landlock domain, which
    /// filters ports, not addresses: the kernel enforces only the port, and the host part
    /// documents the destination (and helps check the program's arguments). UDP (DNS) and unix
    /// sockets are not filtered.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")))]
    pub net: Vec<Located<String>>,
    /// Addresses the program may listen on over TCP, as `HOST:PORT` like `net`, e.g.
    /// `127.0.0.1:3000`. Without `bind` the program cannot bind any TCP port. Landlock filters
    /// ports, not addresses: the kernel enforces only the port, the host part is documentation.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")))]
    pub bind: Vec<Located<String>>,
    /// Why the step needs this program, shown by `plan`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// An HTTP origin the step may reach.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `http://HOST:PORT`, where PORT may be `*` (any port of that host), e.g.
    /// `http://127.0.0.1:*`. Only `http` is supported; no path, no user info.
    #[schemars(regex(pattern = r"^http://[A-Za-z0-9.\[\]:-]+:([0-9]{1,5}|\*)$"))]
    pub origin: Located<String>,
    /// Why the step needs it, shown by `plan`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Per-step limits.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Memory: a number of bytes, or a string like `"512MiB"` (B, KiB, MiB, GiB, KB, MB, GB).
    #[serde(default)]
    pub memory: Option<Located<SizeValue>>,
    /// Wall-clock time, e.g. `"500ms"`, `"30s"`, `"10m"`, `"1h30m"`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s|ms))+$"))]
    pub timeout: Option<Located<String>>,
}

impl LimitsSpec {
    pub(crate) fn set_src(&mut self, src: usize) {
        if let Some(m) = &mut self.memory {
            m.set_src(src);
        }
        if let Some(t) = &mut self.timeout {
            t.set_src(src);
        }
    }
}

/// A size as written: bytes, or a string with a unit.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeValue {
    /// A number of bytes.
    Bytes(i64),
    /// A number with a unit, e.g. `"512MiB"`.
    Text(String),
}

impl JsonSchema for SizeValue {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 1, "description": "A number of bytes." },
                {
                    "type": "string",
                    "pattern": r"^[0-9]+ ?(B|KiB|MiB|GiB|KB|MB|GB)$",
                    "description": "A number with a unit, e.g. \"512MiB\".",
                },
            ],
        })
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a string like \"512MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                i64::try_from(v)
                    .map(SizeValue::Bytes)
                    .map_err(|_| E::custom("size is too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(v.to_owned()))
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// A step's `config`: an arbitrary TOML table, with positions of every value so template errors
/// can point at them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigTable(pub Vec<(String, Located<ConfigValue>)>);

/// A value inside a step's `config`.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// A string; templated at resolve time.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Boolean(bool),
    /// A TOML date-time, handed to the plugin as its TOML text.
    Datetime(String),
    /// An array.
    Array(Vec<Located<ConfigValue>>),
    /// A table.
    Table(ConfigTable),
}

impl ConfigTable {
    pub(crate) fn set_src(&mut self, src: usize) {
        for (_, v) in &mut self.0 {
            v.set_src(src);
            v.value.set_src(src);
        }
    }

    /// Deep merge: tables merge recursively, other values replace.
    pub(crate) fn merge(&mut self, patch: ConfigTable) {
        for (key, value) in patch.0 {
            match self.0.iter_mut().find(|(k, _)| *k == key) {
                Some((_, existing)) => match (&mut existing.value, value.value) {
                    (ConfigValue::Table(base), ConfigValue::Table(patch)) => base.merge(patch),
                    (_, replacement) => {
                        *existing = Located {
                            value: replacement,
                            span: value.span,
                            src: value.src,
                        }
                    }
                },
                None => self.0.push((key, value)),
            }
        }
    }
}

impl ConfigValue {
    fn set_src(&mut self, src: usize) {
        match self {
            ConfigValue::Array(items) => {
                for item in items {
                    item.set_src(src);
                    item.value.set_src(src);
                }
            }
            ConfigValue::Table(table) => table.set_src(src),
            _ => {}
        }
    }
}

impl<'de> Deserialize<'de> for ConfigTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = ConfigTable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ConfigTable, A::Error> {
                match read_map(map)? {
                    ConfigValue::Table(t) => Ok(t),
                    _ => Err(de::Error::custom(
                        "invalid type: date-time, expected a table",
                    )),
                }
            }
        }
        d.deserialize_map(TableVisitor)
    }
}

// toml hands date-times to `deserialize_any` as a one-entry map with this private key.
const TOML_DATETIME_FIELD: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Boolean(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                i64::try_from(v)
                    .map(ConfigValue::Integer)
                    .map_err(|_| E::custom("integer is too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ConfigValue, E> {
                Ok(ConfigValue::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ConfigValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(ConfigValue::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ConfigValue, A::Error> {
                read_map(map)
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

fn read_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<ConfigValue, A::Error> {
    let mut entries = Vec::new();
    while let Some(key) = map.next_key::<String>()? {
        if key == TOML_DATETIME_FIELD {
            return Ok(ConfigValue::Datetime(map.next_value()?));
        }
        entries.push((key, map.next_value()?));
    }
    Ok(ConfigValue::Table(ConfigTable(entries)))
}

impl JsonSchema for ConfigTable {
    fn schema_name() -> Cow<'static, str> {
        "ConfigTable".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Handed to the plugin as JSON; strings are templated.",
            "additionalProperties": true,
        })
    }
}

/// A tier overlay: patches param defaults, step config and step limits of named pipelines.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    /// What the tier changes.
    #[serde(default)]
    pub description: Option<String>,
    /// Patches by pipeline name: `[pipelines.backup.params.retention]`.
    #[serde(default)]
    pub pipelines: OrderedMap<PipelinePatch>,
    /// When `serve` runs pipelines on its own for the tier's customers, by pipeline name:
    /// `[schedule] backup = "daily 03:00"`, or a table with options (`[schedule.drill]`).
    #[serde(default)]
    pub schedule: OrderedMap<Located<ScheduleSpec>>,
}

/// One pipeline's schedule in a tier overlay.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub enum ScheduleSpec {
    /// The cadence alone, with the default window, jitter and catch-up: `"daily 03:00"`,
    /// `"weekly sun 04:30 +03:00"`, `"every 6h"`, or `"off"` for none.
    Cadence(String),
    /// The cadence with options.
    Table(ScheduleTable),
}

/// A schedule with its options.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTable {
    /// The cadence: `"daily 03:00"`, `"weekly sun 04:30 +03:00"` (times are UTC unless an offset
    /// follows), `"every 6h"` (at least `1m`), or `"off"`.
    pub at: Located<String>,
    /// How long after its (jittered) time a slot still starts on time; a slot found later (the
    /// host was down, or busy with `max_concurrent` scheduled runs) is a catch-up. Default `2h`,
    /// or the period of a shorter `every`.
    #[serde(default)]
    pub window: Option<Located<String>>,
    /// Each customer starts at a fixed offset below this after the slot, so a tier's shops do not
    /// all start at once. Default a quarter of the window, at most `30m`; `"0s"` for none.
    #[serde(default)]
    pub jitter: Option<Located<String>>,
    /// Whether a slot that passed unhandled runs once when the host notices (true, the
    /// default), or is recorded as missed. Several passed slots still make one run.
    #[serde(default)]
    pub catch_up: Option<bool>,
    /// Params of the scheduled runs, e.g. `{ type = "fast" }`; every required param must be set.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, DefaultSchema>")]
    pub params: OrderedMap<Located<toml::Value>>,
}

impl<'de> Deserialize<'de> for ScheduleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScheduleSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a schedule like \"daily 03:00\", or a table with `at`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScheduleSpec, E> {
                Ok(ScheduleSpec::Cadence(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ScheduleSpec, A::Error> {
                ScheduleTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ScheduleSpec::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// The patches of one pipeline.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelinePatch {
    /// New param defaults, by param name.
    #[serde(default)]
    pub params: OrderedMap<ParamPatch>,
    /// Step patches, by step id (in `steps`, `on_success`, `on_failure` or `finally`).
    #[serde(default)]
    pub steps: OrderedMap<StepPatch>,
}

/// A param patch: only the default can change.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamPatch {
    /// The new default; must match the param's type.
    #[schemars(with = "DefaultSchema")]
    pub default: Located<toml::Value>,
}

/// A step patch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepPatch {
    /// Deep-merged into the step's config: tables merge recursively, other values replace.
    #[serde(default)]
    pub config: Option<ConfigTable>,
    /// Replaces the limits that are set here.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
}
