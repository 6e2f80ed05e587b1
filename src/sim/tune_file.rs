//! The tuned policy file: the current file, its comments kept, with the tuned keys set and
//! marked, and a header saying where the values came from. The text is parsed and validated
//! before it is returned: `tune` never writes a policy the controller would reject.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::core::PoolPolicy;
use crate::core::policy::{PolicySource, parse_sources};

/// Keys whose values are numbers in a policy file (the rest are strings or counts).
const FLOATS: [&str; 5] = [
    "band.low",
    "band.high",
    "band.setpoint",
    "scale_up.confirm_unless",
    "scale_down.collapse_below",
];
const COUNTS: [&str; 2] = ["scale_up.confirm", "instances.queue"];

/// `original` (the current policy file's text) with `settings` applied as `tuned` has them,
/// each changed line marked with its old value, under `header` (comment lines, without `#`).
pub fn tuned_text(
    original: &str,
    path: &Path,
    settings: &[(String, String)],
    tuned: &PoolPolicy,
    header: &[String],
) -> Result<String, String> {
    let mut doc: DocumentMut = original
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut keys: Vec<(String, Item)> = Vec::new();
    for (key, value) in settings {
        if key == "band.high" {
            // The band moved as a whole.
            keys.push(("band.low".into(), float(tuned.band.low)));
            keys.push(("band.high".into(), float(tuned.band.high)));
            keys.push(("band.setpoint".into(), float(tuned.band.setpoint)));
            continue;
        }
        let item = if key == "band.headroom" && value.trim() == "0" {
            Item::None
        } else if FLOATS.contains(&key.as_str()) {
            float(
                value
                    .trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{key}: {e}"))?,
            )
        } else if COUNTS.contains(&key.as_str()) || value.trim().parse::<i64>().is_ok() {
            let n: i64 = value.trim().parse().map_err(|e| format!("{key}: {e}"))?;
            toml_edit::value(n)
        } else if value.trim() == "true" || value.trim() == "false" {
            toml_edit::value(value.trim() == "true")
        } else {
            toml_edit::value(value.trim())
        };
        keys.push((key.clone(), item));
    }
    for (key, item) in keys {
        set(&mut doc, &key, item)?;
    }
    let mut text = String::new();
    for line in header {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&doc.to_string());
    let set = parse_sources(&[PolicySource {
        path: path.to_path_buf(),
        text: text.clone(),
    }])
    .map_err(|e| format!("the tuned policy does not parse: {e}"))?;
    match set.pools.get(&tuned.pool) {
        Some(p) if same_knobs(p, tuned) => Ok(text),
        Some(_) => Err("the tuned file does not read back as the tuned policy".into()),
        None => Err(format!("the tuned file has no pool `{}`", tuned.pool)),
    }
}

fn float(v: f64) -> Item {
    // Three decimals: a band is read to the hundredth; the file stays readable.
    toml_edit::value((v * 1000.0).round() / 1000.0)
}

fn set(doc: &mut DocumentMut, key: &str, item: Item) -> Result<(), String> {
    let (section, name) = key
        .split_once('.')
        .ok_or_else(|| format!("`{key}` names no section"))?;
    if !doc.contains_key(section) {
        let mut t = Table::new();
        t.set_implicit(false);
        doc.insert(section, Item::Table(t));
    }
    let table = doc[section]
        .as_table_mut()
        .ok_or_else(|| format!("`{section}` is not a table"))?;
    let old = table.get(name).and_then(Item::as_value).map(display);
    if item.is_none() {
        table.remove(name);
        return Ok(());
    }
    table.insert(name, item);
    if let Some(Item::Value(v)) = table.get_mut(name) {
        let note = match old {
            Some(o) if o != display(v) => format!(" # tuned (was {o})"),
            Some(_) => return Ok(()),
            None => " # tuned".to_string(),
        };
        v.decor_mut().set_suffix(note);
    }
    Ok(())
}

fn display(v: &Value) -> String {
    v.clone().decorated("", "").to_string()
}

/// The knobs tune sets read back as they were chosen (bands to the rounding of the file).
fn same_knobs(a: &PoolPolicy, b: &PoolPolicy) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() < 1e-3;
    close(a.band.high, b.band.high)
        && close(a.band.low, b.band.low)
        && close(a.band.setpoint, b.band.setpoint)
        && a.band.headroom == b.band.headroom
        && a.scale_up == b.scale_up
        && a.scale_down == b.scale_down
        && a.forecast == b.forecast
        && a.slo == b.slo
        && a.instances == b.instances
        && a.metrics == b.metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::tune::with_knob;

    const FILE: &str = "# model-a\npool = \"m\"\nmin = 1\nmax = 10\n\n# the band\n[band]\nlow = 1.0\nhigh = 1.5\nsetpoint = 1.25\nheadroom = 2\n\n[regions.us-east-1]\nasg = \"g\"\n";

    fn current() -> PoolPolicy {
        parse_sources(&[PolicySource {
            path: "m.toml".into(),
            text: FILE.into(),
        }])
        .unwrap()
        .pools["m"]
            .clone()
    }

    #[test]
    fn tuned_keys_are_set_marked_and_the_comments_kept() {
        let settings = [
            ("band.high".to_string(), "1.8".to_string()),
            ("band.headroom".to_string(), "0".to_string()),
            ("scale_up.confirm".to_string(), "2".to_string()),
            ("scale_down.stabilization".to_string(), "9m".to_string()),
            ("forecast.mode".to_string(), "trend".to_string()),
        ];
        let mut tuned = current();
        for (k, v) in &settings {
            tuned = with_knob(&tuned, k, v).unwrap();
        }
        let text = tuned_text(
            FILE,
            Path::new("m.toml"),
            &settings,
            &tuned,
            &["tuned by walk-forward".into()],
        )
        .unwrap();
        assert!(text.starts_with("# tuned by walk-forward\n"), "{text}");
        assert!(text.contains("# the band"), "{text}");
        assert!(text.contains("high = 1.8 # tuned (was 1.5)"), "{text}");
        assert!(text.contains("low = 1.2 # tuned (was 1.0)"), "{text}");
        assert!(!text.contains("headroom"), "{text}");
        assert!(text.contains("[scale_up]\nconfirm = 2 # tuned"), "{text}");
        assert!(text.contains("stabilization = \"9m\" # tuned"), "{text}");
        assert!(text.contains("mode = \"trend\" # tuned"), "{text}");
    }

    #[test]
    fn a_setting_the_file_cannot_hold_is_an_error() {
        let settings = [("nosection".to_string(), "1".to_string())];
        assert!(tuned_text(FILE, Path::new("m.toml"), &settings, &current(), &[]).is_err());
    }
}
