//! The strict walker over a span-carrying TOML tree: reads one policy file into the model,
//! reporting syntax, type, unknown-key and missing-key problems itself, then runs the one
//! validator (`validate::check`) and places each violation at the line of the key it is about.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::validate;
use super::{
    Band, Forecast, ForecastMode, Instances, Metrics, PoolPolicy, Problem, RegionPolicy, ScaleDown,
    ScaleUp, Schedule, Slo, Step,
};

/// What parsing one file gave: the policy (with the line and column of its pool name) when
/// the file is valid, and every problem found.
pub(super) struct ParsedFile {
    pub policy: Option<(PoolPolicy, (usize, usize))>,
    pub problems: Vec<Problem>,
}

pub(super) fn parse_file(path: &Path, text: &str) -> ParsedFile {
    let mut cx = FileCx::new(path, text);
    let policy = parse_pool(&mut cx).map(|(p, span)| {
        let at = cx.line_col(span.start);
        (p, at)
    });
    ParsedFile {
        policy,
        problems: cx.problems,
    }
}

struct FileCx<'s> {
    file: String,
    text: &'s str,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
    /// Where each key's value was written (`band.low`, `regions.us-east-1.max`,
    /// `schedule[0].min`), and each table (`band`, `regions.us-east-1`, `schedule[0]`).
    spans: HashMap<String, Range<usize>>,
    /// Keys whose value could not be read: the validator's view of them (a default) is not
    /// what the file says, so its findings on them are not reported.
    unreadable: Vec<String>,
    /// The file path (`schedule[i]`) of each schedule that made it into the model.
    schedule_paths: Vec<String>,
}

type Table<'i> = DeTable<'i>;

impl<'s> FileCx<'s> {
    fn new(path: &Path, text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        FileCx {
            file: path.display().to_string(),
            text,
            line_starts,
            problems: Vec::new(),
            spans: HashMap::new(),
            unreadable: Vec::new(),
            schedule_paths: Vec::new(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        (line + 1, col)
    }

    /// Report a problem with the value of `key` (so the validator does not report it again).
    fn bad_value(
        &mut self,
        key: String,
        span: Range<usize>,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.unreadable.push(key);
        self.problem(span, what, fix);
    }

    fn problem(&mut self, span: Range<usize>, what: impl Into<String>, fix: impl Into<String>) {
        let (line, col) = self.line_col(span.start);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            col,
            what: what.into(),
            fix: fix.into(),
        });
    }

    /// The span of `key`, else of the nearest enclosing table that was written, else the
    /// file's start.
    fn span_of(&self, key: &str) -> Range<usize> {
        let mut k = key;
        loop {
            if let Some(s) = self.spans.get(k) {
                return s.clone();
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => return 0..0,
            }
        }
    }
}

/// One table being read: records which keys were consumed so unknown ones can be reported,
/// and where each value was written.
struct Reader<'t, 'i> {
    table: &'t Table<'i>,
    path: String,
    used: Vec<&'static str>,
}

impl<'t, 'i> Reader<'t, 'i> {
    fn new(table: &'t Table<'i>, path: impl Into<String>) -> Self {
        Reader {
            table,
            path: path.into(),
            used: Vec::new(),
        }
    }

    fn key_name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.used.push(key);
        let v = self.table.get(key)?;
        cx.spans.insert(self.key_name(key), v.span());
        Some(v)
    }

    /// Report every key not consumed, with a suggestion when one is close.
    fn finish(self, cx: &mut FileCx<'_>, known: &[&'static str]) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if !self.used.contains(&name) && !known.contains(&name) {
                let all: Vec<&str> = self.used.iter().chain(known.iter()).copied().collect();
                let fix = match closest(name, &all) {
                    Some(s) => format!("did you mean `{s}`? Unknown keys are errors"),
                    None => format!(
                        "remove it; keys allowed here: {}",
                        if all.is_empty() {
                            "none".to_string()
                        } else {
                            all.join(", ")
                        }
                    ),
                };
                cx.problem(
                    k.span(),
                    format!("unknown key `{}`", self.key_name(name)),
                    fix,
                );
            }
        }
    }

    fn table(
        &mut self,
        cx: &mut FileCx<'_>,
        key: &'static str,
    ) -> Option<(&'t Table<'i>, Range<usize>)> {
        let v = self.get(cx, key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span())),
            other => {
                cx.problem(
                    v.span(),
                    format!(
                        "`{}` must be a table, found {}",
                        self.key_name(key),
                        kind(other)
                    ),
                    format!("write it as a [{}] section", self.key_name(key)),
                );
                None
            }
        }
    }

    fn string(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(String, Range<usize>)> {
        let v = self.get(cx, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            other => {
                cx.bad_value(
                    self.key_name(key),
                    v.span(),
                    format!(
                        "`{}` must be a string, found {}",
                        self.key_name(key),
                        kind(other)
                    ),
                    "quote the value",
                );
                None
            }
        }
    }

    fn boolean(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<(bool, Range<usize>)> {
        let v = self.get(cx, key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, v.span())),
            other => {
                cx.bad_value(
                    self.key_name(key),
                    v.span(),
                    format!(
                        "`{}` must be true or false, found {}",
                        self.key_name(key),
                        kind(other)
                    ),
                    "write true or false, unquoted",
                );
                None
            }
        }
    }

    fn uint(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<u32> {
        let v = self.get(cx, key)?;
        let name = self.key_name(key);
        as_uint(cx, v, &name)
    }

    fn float(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<f64> {
        let v = self.get(cx, key)?;
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f64::from_str(&f.as_str().replace('_', "")).ok(),
            DeValue::Integer(i) if i.radix() == 10 => i
                .as_str()
                .replace('_', "")
                .parse::<i64>()
                .ok()
                .map(|n| n as f64),
            _ => None,
        };
        match parsed {
            Some(f) if f.is_finite() => Some(f),
            _ => {
                cx.bad_value(
                    self.key_name(key),
                    v.span(),
                    format!(
                        "`{}` must be a number, found {}",
                        self.key_name(key),
                        kind(v.get_ref())
                    ),
                    "write a decimal number such as 1.25",
                );
                None
            }
        }
    }

    fn duration(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<Duration> {
        let (s, span) = self.string(cx, key)?;
        match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                cx.bad_value(
                    self.key_name(key),
                    span,
                    format!("`{}` = \"{s}\" is not a duration: {e}", self.key_name(key)),
                    "write a duration such as \"30s\", \"6m\" or \"1h 30m\"",
                );
                None
            }
        }
    }

    fn step(&mut self, cx: &mut FileCx<'_>, key: &'static str) -> Option<Step> {
        let v = self.get(cx, key)?;
        let name = self.key_name(key);
        let fix = "write a count of instances (e.g. 4) or a percentage of current capacity (e.g. \"50%\")";
        match v.get_ref() {
            DeValue::Integer(_) => as_uint(cx, v, &name).map(Step::Count),
            DeValue::String(s) => match s.trim().strip_suffix('%').and_then(|_| Step::parse(s)) {
                Some(step) => Some(step),
                None => {
                    cx.bad_value(
                        name,
                        v.span(),
                        format!(
                            "`{}` = \"{s}\" is not a percentage in (0, 1000]",
                            self.key_name(key)
                        ),
                        fix,
                    );
                    None
                }
            },
            other => {
                cx.bad_value(
                    name.clone(),
                    v.span(),
                    format!(
                        "`{name}` must be a count or a percentage, found {}",
                        kind(other)
                    ),
                    fix,
                );
                None
            }
        }
    }
}

fn as_uint(cx: &mut FileCx<'_>, v: &Spanned<DeValue<'_>>, name: &str) -> Option<u32> {
    let fix = "write a whole number of instances, 0 or more";
    match v.get_ref() {
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let parsed = i64::from_str_radix(
                digits
                    .trim_start_matches("0x")
                    .trim_start_matches("0o")
                    .trim_start_matches("0b"),
                i.radix(),
            );
            match parsed {
                Ok(n) if (0..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
                _ => {
                    cx.bad_value(
                        name.to_string(),
                        v.span(),
                        format!("`{name}` = {digits} is out of range"),
                        fix,
                    );
                    None
                }
            }
        }
        other => {
            cx.bad_value(
                name.to_string(),
                v.span(),
                format!("`{name}` must be a whole number, found {}", kind(other)),
                fix,
            );
            None
        }
    }
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The closest known key within edit distance 2, for "did you mean".
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

const TOP_KEYS: &[&str] = &[
    "pool",
    "min",
    "max",
    "band",
    "scale_up",
    "scale_down",
    "metrics",
    "instances",
    "regions",
    "schedule",
    "forecast",
    "slo",
];

/// Parse one file into a pool policy, recording every problem in `cx`.
fn parse_pool(cx: &mut FileCx<'_>) -> Option<(PoolPolicy, Range<usize>)> {
    let text = cx.text;
    let doc = match DeTable::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            cx.problem(
                span,
                format!("not valid TOML: {msg}"),
                "fix the syntax at this position",
            );
            return None;
        }
    };
    let root = doc.get_ref();
    let mut r = Reader::new(root, "");

    let pool = match r.string(cx, "pool") {
        Some((name, span)) => {
            if !valid_name(&name) {
                cx.problem(
                    span.clone(),
                    format!("pool name `{name}` is not allowed"),
                    "use 1–64 letters, digits, '-', '_' or '.' (no '#': it separates the metrics key)",
                );
            }
            Some((name, span))
        }
        None => {
            if !root.contains_key("pool") {
                cx.problem(
                    0..0,
                    "the file names no pool",
                    "add `pool = \"model-a\"` at the top of the file",
                );
            }
            None
        }
    };
    let min = r.uint(cx, "min");
    let max = r.uint(cx, "max");
    for (key, v, fix) in [
        (
            "min",
            &min,
            "add `min = N`, the fewest instances the pool may have in any region",
        ),
        (
            "max",
            &max,
            "add `max = N`, the most instances the pool may have in any region",
        ),
    ] {
        if v.is_none() && !root.contains_key(key) {
            cx.problem(0..0, format!("missing `{key}`"), fix);
        }
    }

    let band = parse_band(cx, &mut r);
    let scale_up = parse_scale_up(cx, &mut r);
    let scale_down = parse_scale_down(cx, &mut r);
    let metrics = parse_metrics(cx, &mut r);
    let instances = parse_instances(cx, &mut r);
    let min_v = min.unwrap_or(0);
    let max_v = max.unwrap_or(min_v.max(1));
    let regions = parse_regions(cx, &mut r, min_v, max_v);
    let schedules = parse_schedules(cx, &mut r, &regions);
    let forecast = parse_forecast(cx, &mut r);
    let slo = parse_slo(cx, &mut r);
    r.finish(cx, TOP_KEYS);

    // Validate what could be read, even when other keys had problems, so one run reports
    // every problem; values that could not be read stand in as defaults and are not judged.
    if min.is_none() {
        cx.unreadable.push("min".into());
    }
    if max.is_none() {
        cx.unreadable.push("max".into());
    }
    let policy = PoolPolicy {
        pool: pool.as_ref().map_or_else(String::new, |p| p.0.clone()),
        source: PathBuf::from(&cx.file),
        min: min_v,
        max: max_v,
        band,
        scale_up,
        scale_down,
        metrics,
        instances,
        regions,
        schedules,
        forecast,
        slo,
    };
    for mut v in validate::check(&policy) {
        if let Some(rest) = v.key.strip_prefix("schedule[")
            && let Some((i, tail)) = rest.split_once(']')
            && let Some(path) = i
                .parse::<usize>()
                .ok()
                .and_then(|i| cx.schedule_paths.get(i))
        {
            v.key = format!("{path}{tail}");
        }
        if cx
            .unreadable
            .iter()
            .any(|k| v.key == *k || v.key.starts_with(&format!("{k}.")))
        {
            continue;
        }
        let span = cx.span_of(&v.key);
        cx.problem(span, v.what, v.fix);
    }
    if !cx.problems.is_empty() {
        return None;
    }
    let (_, pool_span) = pool?;
    Some((policy, pool_span))
}

fn parse_band(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Band {
    let Some((t, _)) = root.table(cx, "band") else {
        return Band::default();
    };
    let mut r = Reader::new(t, "band");
    let low = r.float(cx, "low").unwrap_or(1.0);
    let high = r.float(cx, "high").unwrap_or(1.5);
    let setpoint = r.float(cx, "setpoint").unwrap_or((low + high) / 2.0);
    let headroom = r.step(cx, "headroom");
    r.finish(cx, &[]);
    Band {
        low,
        high,
        setpoint,
        headroom,
    }
}

fn parse_scale_up(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> ScaleUp {
    let mut out = ScaleUp::default();
    let Some((t, _)) = root.table(cx, "scale_up") else {
        return out;
    };
    let mut r = Reader::new(t, "scale_up");
    if let Some(s) = r.step(cx, "max_step") {
        out.max_step = s;
    }
    if let Some(d) = r.duration(cx, "cooldown") {
        out.cooldown = d;
    }
    if let Some(n) = r.uint(cx, "confirm") {
        out.confirm = n;
    }
    if let Some(f) = r.float(cx, "confirm_unless") {
        out.confirm_unless = f;
    }
    r.finish(cx, &[]);
    out
}

fn parse_scale_down(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> ScaleDown {
    let mut out = ScaleDown::default();
    let Some((t, _)) = root.table(cx, "scale_down") else {
        return out;
    };
    let mut r = Reader::new(t, "scale_down");
    if let Some(s) = r.step(cx, "max_step") {
        out.max_step = s;
    }
    if let Some(d) = r.duration(cx, "stabilization") {
        out.stabilization = d;
    }
    if let Some(d) = r.duration(cx, "cooldown") {
        out.cooldown = d;
    }
    let timeout = r.duration(cx, "drain_timeout");
    if let Some(d) = timeout {
        out.drain = Some(d);
    }
    if let Some((on, s)) = r.boolean(cx, "drain")
        && !on
    {
        if timeout.is_some() {
            cx.problem(
                s,
                "scale_down.drain = false but a drain_timeout is set",
                "remove drain_timeout, or drain = false to let the ASG choose victims",
            );
        }
        out.drain = None;
    }
    if let Some(f) = r.float(cx, "collapse_below") {
        out.collapse_below = f;
    }
    if let Some(d) = r.duration(cx, "collapse_hold") {
        out.collapse_hold = d;
    }
    r.finish(cx, &[]);
    out
}

fn parse_metrics(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Metrics {
    let mut out = Metrics::default();
    let Some((t, _)) = root.table(cx, "metrics") else {
        return out;
    };
    let mut r = Reader::new(t, "metrics");
    if let Some(d) = r.duration(cx, "window") {
        out.window = d;
    }
    if let Some(d) = r.duration(cx, "stale_after") {
        out.stale_after = d;
    }
    if let Some(n) = r.uint(cx, "stale_fallback") {
        out.stale_fallback = Some(n);
    }
    r.finish(cx, &[]);
    out
}

fn parse_instances(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Instances {
    let mut out = Instances::default();
    let Some((t, _)) = root.table(cx, "instances") else {
        return out;
    };
    let mut r = Reader::new(t, "instances");
    if let Some(d) = r.duration(cx, "heartbeat_timeout") {
        out.heartbeat_timeout = d;
    }
    if let Some(d) = r.duration(cx, "launch_time") {
        out.launch_time = d;
    }
    if let Some(d) = r.duration(cx, "launch_timeout") {
        out.launch_timeout = d;
    }
    if let Some(f) = r.float(cx, "max_rps") {
        out.max_rps = f;
    }
    if let Some(n) = r.uint(cx, "queue") {
        out.queue = n;
    }
    r.finish(cx, &[]);
    out
}

fn parse_slo(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Option<Slo> {
    let (t, span) = root.table(cx, "slo")?;
    let mut out = Slo::default();
    let mut r = Reader::new(t, "slo");
    match r.get(cx, "over_capacity") {
        Some(v) => match v.get_ref() {
            DeValue::String(s) => match parse_percent(s) {
                Some(f) => out.over_capacity = f,
                None => cx.bad_value(
                    "slo.over_capacity".into(),
                    v.span(),
                    format!("`slo.over_capacity` = \"{s}\" is not a percentage"),
                    "write the share of requests that may find the queue full, e.g. \"0.1%\"",
                ),
            },
            other => cx.bad_value(
                "slo.over_capacity".into(),
                v.span(),
                format!(
                    "`slo.over_capacity` must be a percentage, found {}",
                    kind(other)
                ),
                "write it as a string, e.g. \"0.1%\"",
            ),
        },
        None => cx.problem(
            span,
            "[slo] needs `over_capacity`",
            "write the share of requests that may find the queue full, e.g. over_capacity = \"0.1%\"",
        ),
    }
    if let Some(d) = r.duration(cx, "history") {
        out.history = d;
    }
    r.finish(cx, &[]);
    Some(out)
}

/// "0.1%" as 0.001.
pub(super) fn parse_percent(s: &str) -> Option<f64> {
    s.trim()
        .strip_suffix('%')?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v / 100.0)
}

fn parse_forecast(cx: &mut FileCx<'_>, root: &mut Reader<'_, '_>) -> Forecast {
    let mut out = Forecast::default();
    let Some((t, _)) = root.table(cx, "forecast") else {
        return out;
    };
    let mut r = Reader::new(t, "forecast");
    if let Some((m, span)) = r.string(cx, "mode") {
        match ForecastMode::parse(&m) {
            Some(mode) => out.mode = mode,
            None => cx.problem(
                span,
                format!("forecast.mode = \"{m}\" is not a forecast mode"),
                "write \"off\", \"trend\" or \"seasonal\"",
            ),
        }
    }
    if let Some(d) = r.duration(cx, "horizon") {
        out.horizon = Some(d);
    }
    if let Some(d) = r.duration(cx, "trend_window") {
        out.trend_window = d;
    }
    if let Some(st) = r.step(cx, "max_lift") {
        out.max_lift = st;
    }
    r.finish(cx, &[]);
    out
}

fn parse_regions(
    cx: &mut FileCx<'_>,
    root: &mut Reader<'_, '_>,
    default_min: u32,
    default_max: u32,
) -> BTreeMap<String, RegionPolicy> {
    let mut out = BTreeMap::new();
    let present = root.table.contains_key("regions");
    let no_regions =
        "add a [regions.us-east-1] section with `asg = \"...\"` for each region it runs in";
    let Some((t, span)) = root.table(cx, "regions") else {
        if !present {
            cx.problem(0..0, "the pool has no regions", no_regions);
        }
        return out;
    };
    if t.is_empty() {
        cx.problem(span, "the pool has no regions", no_regions);
        return out;
    }
    for (name, value) in t.iter() {
        let region: &str = name.get_ref();
        cx.spans.insert(format!("regions.{region}"), name.span());
        let DeValue::Table(rt) = value.get_ref() else {
            cx.problem(
                value.span(),
                format!("regions.{region} must be a table"),
                format!("write it as a [regions.{region}] section with `asg = \"...\"`"),
            );
            continue;
        };
        if !valid_region(region) {
            cx.problem(
                name.span(),
                format!("`{region}` is not an AWS region name"),
                "use a region code such as us-east-1",
            );
        }
        let mut r = Reader::new(rt, format!("regions.{region}"));
        let asg = r.string(cx, "asg");
        if asg.is_none() && !rt.contains_key("asg") {
            cx.problem(
                name.span(),
                format!("region {region} names no Auto Scaling Group"),
                format!("add `asg = \"<group name>\"` under [regions.{region}]"),
            );
        }
        let min = r.uint(cx, "min").unwrap_or(default_min);
        let max = r.uint(cx, "max").unwrap_or(default_max);
        r.finish(cx, &[]);
        if let Some((asg, _)) = asg {
            out.insert(region.to_string(), RegionPolicy { asg, min, max });
        }
    }
    out
}

fn parse_schedules(
    cx: &mut FileCx<'_>,
    root: &mut Reader<'_, '_>,
    regions: &BTreeMap<String, RegionPolicy>,
) -> Vec<Schedule> {
    let Some(v) = root.get(cx, "schedule") else {
        return Vec::new();
    };
    let DeValue::Array(items) = v.get_ref() else {
        cx.problem(
            v.span(),
            "`schedule` must be an array of tables",
            "write each window as a [[schedule]] section",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let DeValue::Table(t) = item.get_ref() else {
            cx.problem(
                item.span(),
                "each schedule must be a table",
                "write each window as a [[schedule]] section",
            );
            continue;
        };
        let path = format!("schedule[{i}]");
        cx.spans.insert(path.clone(), item.span());
        let mut r = Reader::new(t, path.clone());
        let name = r.string(cx, "name");
        let cron = r.string(cx, "cron");
        let duration = r.duration(cx, "duration");
        let min = r.uint(cx, "min");
        let sched_regions = schedule_regions(cx, &mut r, regions);
        r.finish(cx, &[]);
        for key in ["name", "cron", "duration", "min"] {
            if !t.contains_key(key) {
                cx.problem(
                    item.span(),
                    format!("schedule is missing `{key}`"),
                    "a schedule needs name, cron (UTC), duration and min",
                );
            }
        }
        let parsed_cron = cron.as_ref().and_then(|(expr, span)| match Cron::from_str(expr) {
            Ok(c) => Some(c),
            Err(e) => {
                cx.problem(
                    span.clone(),
                    format!("cron \"{expr}\" is not valid: {e}"),
                    "write five fields in UTC: minute hour day-of-month month day-of-week, e.g. \"0 13 * * 1-5\"",
                );
                None
            }
        });
        if let Some((n, span)) = &name {
            if names.contains(n) {
                cx.problem(
                    span.clone(),
                    format!("schedule `{n}` is defined twice"),
                    "give each schedule a distinct name",
                );
            }
            names.push(n.clone());
        }
        if let (Some((n, _)), Some((expr, _)), Some(c), Some(d), Some(m)) =
            (name, cron, parsed_cron, duration, min)
        {
            cx.schedule_paths.push(path);
            out.push(Schedule {
                name: n,
                cron_expr: expr,
                cron: c,
                duration: d,
                min: m,
                regions: sched_regions,
            });
        }
    }
    out
}

fn schedule_regions(
    cx: &mut FileCx<'_>,
    r: &mut Reader<'_, '_>,
    regions: &BTreeMap<String, RegionPolicy>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(rv) = r.get(cx, "regions") else {
        return out;
    };
    match rv.get_ref() {
        DeValue::Array(a) => {
            for e in a.iter() {
                match e.get_ref() {
                    DeValue::String(s) if regions.contains_key(s.as_ref()) => {
                        out.push(s.to_string())
                    }
                    DeValue::String(s) => cx.problem(
                        e.span(),
                        format!("schedule region `{s}` is not one of the pool's regions"),
                        format!(
                            "use one of: {}",
                            regions.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ),
                    other => cx.problem(
                        e.span(),
                        format!("schedule regions must be strings, found {}", kind(other)),
                        "write region names such as \"us-east-1\"",
                    ),
                }
            }
        }
        other => cx.problem(
            rv.span(),
            format!("schedule.regions must be an array, found {}", kind(other)),
            "write regions = [\"us-east-1\"]",
        ),
    }
    out
}
