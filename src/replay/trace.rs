//! Loading request traces: `timestamp_s,rps` CSV (a rate per row), or per-request arrival
//! timestamps (one number per line) which are binned into per-second counts.
//!
//! Every problem names the file and line. Repairs are never silent: none are made.

use std::fmt;
use std::path::Path;

/// The longest trace replayed: 120 days. The traffic model works second by second, so a
/// trace's duration sizes its memory (about 12 bytes per second per pool): the bound keeps a
/// typo in a timestamp from asking for gigabytes.
pub const MAX_TRACE_SECONDS: u64 = 120 * 86_400;

/// The coarsest step a rate trace may have: a day.
pub const MAX_STEP_SECONDS: i64 = 86_400;

/// A trace as a rate shape: `rates[i]` is the rate over `[i * step_s, (i + 1) * step_s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub name: String,
    pub step_s: u32,
    pub rates: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TraceError {
    pub file: String,
    pub line: usize,
    pub what: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

impl Trace {
    pub fn duration_s(&self) -> u64 {
        self.rates.len() as u64 * u64::from(self.step_s)
    }

    pub fn mean(&self) -> f64 {
        if self.rates.is_empty() {
            0.0
        } else {
            self.rates.iter().sum::<f64>() / self.rates.len() as f64
        }
    }

    /// A per-minute trace from a pool's RPS samples (each the mean of the minute ending at
    /// `at_ms`), oldest first. Minutes without a sample repeat the one before (routers that
    /// missed a write, not a pool without traffic); returns the trace and how many minutes
    /// were filled so. None without samples.
    pub fn from_minute_samples(
        name: &str,
        samples: &[crate::core::Sample],
    ) -> Option<(Trace, u64)> {
        let first = samples.first()?.at_ms.div_euclid(60_000);
        let last = samples.last()?.at_ms.div_euclid(60_000);
        let minutes = usize::try_from(last.checked_sub(first)?.checked_add(1)?).ok()?;
        if minutes as u64 > MAX_TRACE_SECONDS / 60 {
            return None;
        }
        let mut rates: Vec<Option<f64>> = vec![None; minutes];
        for smp in samples {
            let m = smp.at_ms.div_euclid(60_000) - first;
            if let Some(slot) = usize::try_from(m).ok().and_then(|m| rates.get_mut(m))
                && smp.rps.is_finite()
                && smp.rps >= 0.0
            {
                *slot = Some(smp.rps);
            }
        }
        let mut filled = 0;
        let mut prev = 0.0;
        let rates = rates
            .into_iter()
            .map(|r| match r {
                Some(v) => {
                    prev = v;
                    v
                }
                None => {
                    filled += 1;
                    prev
                }
            })
            .collect();
        Some((
            Trace {
                name: name.to_string(),
                step_s: 60,
                rates,
            },
            filled,
        ))
    }

    /// Read a trace file (see the module doc for the formats).
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|e| TraceError {
            file: path.display().to_string(),
            line: 0,
            what: format!("cannot read: {e}"),
        })?;
        let name = path
            .parent()
            .and_then(|p| p.file_name())
            .filter(|_| path.file_stem().is_some_and(|s| s == "rps"))
            .or_else(|| path.file_stem())
            .map_or_else(|| "trace".to_string(), |s| s.to_string_lossy().to_string());
        Self::parse(&path.display().to_string(), &name, &text)
    }

    /// Parse trace text; `file` is only used in messages.
    pub fn parse(file: &str, name: &str, text: &str) -> Result<Trace, TraceError> {
        let err = |line: usize, what: String| TraceError {
            file: file.to_string(),
            line,
            what,
        };
        let mut rows: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let Some(&(hline, header)) = rows.first() else {
            return Err(err(1, "the trace is empty".into()));
        };
        let h = header.to_ascii_lowercase();
        if h.replace(' ', "") == "timestamp_s,rps" {
            rows.remove(0);
            Self::parse_rates(name, &rows, &err)
        } else if h == "timestamp_s" || h == "arrival_s" || h.parse::<f64>().is_ok() {
            if h.parse::<f64>().is_err() {
                rows.remove(0);
            }
            Self::parse_arrivals(name, &rows, &err)
        } else {
            Err(err(
                hline,
                format!(
                    "unknown header `{header}`: expected `timestamp_s,rps` (a rate per row) or `timestamp_s` (one request arrival per row)"
                ),
            ))
        }
    }

    fn parse_rates(
        name: &str,
        rows: &[(usize, &str)],
        err: &dyn Fn(usize, String) -> TraceError,
    ) -> Result<Trace, TraceError> {
        let mut points: Vec<(usize, i64, f64)> = Vec::with_capacity(rows.len());
        for &(line, row) in rows {
            let mut cols = row.split(',');
            let (Some(t), Some(r), None) = (cols.next(), cols.next(), cols.next()) else {
                return Err(err(
                    line,
                    format!("expected two columns `timestamp_s,rps`, found `{row}`"),
                ));
            };
            let t: i64 = t.trim().parse().map_err(|_| {
                err(
                    line,
                    format!("timestamp `{}` is not a whole number of seconds", t.trim()),
                )
            })?;
            let r: f64 = r
                .trim()
                .parse()
                .map_err(|_| err(line, format!("rps `{}` is not a number", r.trim())))?;
            if !r.is_finite() || r < 0.0 {
                return Err(err(
                    line,
                    format!("rps {r} is negative or not finite: a rate must be ≥ 0"),
                ));
            }
            if let Some(&(pline, pt, _)) = points.last() {
                if t == pt {
                    return Err(err(
                        line,
                        format!(
                            "timestamp {t} repeats line {pline}: each timestamp must appear once"
                        ),
                    ));
                }
                if t < pt {
                    return Err(err(
                        line,
                        format!(
                            "timestamp {t} is before {pt} on line {pline}: sort the trace by time"
                        ),
                    ));
                }
            }
            points.push((line, t, r));
        }
        if points.len() < 2 {
            return Err(err(
                rows.first().map_or(1, |r| r.0),
                "a rate trace needs at least two rows to know its step".into(),
            ));
        }
        let step = points[1].1 - points[0].1;
        for w in points.windows(2) {
            let d = w[1].1 - w[0].1;
            if d != step {
                return Err(err(
                    w[1].0,
                    format!(
                        "gap: {d} s since line {} where the trace's step is {step} s; fill the missing rows (e.g. forward-fill) or resample to a constant step",
                        w[0].0
                    ),
                ));
            }
        }
        if step > MAX_STEP_SECONDS {
            return Err(err(
                points[1].0,
                format!(
                    "step {step} s is longer than a day: a rate trace holds one rate per step; \
                     resample it to a step of a day or less"
                ),
            ));
        }
        let step_s = u32::try_from(step)
            .map_err(|_| err(points[1].0, format!("step {step} s is too large")))?;
        let duration = (points.len() as u64).saturating_mul(u64::from(step_s));
        if duration > MAX_TRACE_SECONDS {
            return Err(err(
                points[points.len() - 1].0,
                format!(
                    "the trace lasts {} days, more than the {} days the simulator replays: cut it",
                    duration / 86_400,
                    MAX_TRACE_SECONDS / 86_400
                ),
            ));
        }
        Ok(Trace {
            name: name.to_string(),
            step_s,
            rates: points.into_iter().map(|p| p.2).collect(),
        })
    }

    fn parse_arrivals(
        name: &str,
        rows: &[(usize, &str)],
        err: &dyn Fn(usize, String) -> TraceError,
    ) -> Result<Trace, TraceError> {
        let mut first: Option<f64> = None;
        let mut prev = f64::NEG_INFINITY;
        let mut counts: Vec<f64> = Vec::new();
        for &(line, row) in rows {
            let t: f64 = row
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .map_err(|_| {
                    err(
                        line,
                        format!("arrival time `{row}` is not a number of seconds"),
                    )
                })?;
            if !t.is_finite() {
                return Err(err(line, format!("arrival time {t} is not finite")));
            }
            if t < prev {
                return Err(err(
                    line,
                    format!("arrival {t} is before the previous one ({prev}): sort the arrivals"),
                ));
            }
            prev = t;
            let t0 = *first.get_or_insert(t.floor());
            let offset = (t - t0).floor();
            if offset >= MAX_TRACE_SECONDS as f64 {
                return Err(err(
                    line,
                    format!(
                        "arrival is {offset} s after the first, more than the {} days the \
                         simulator replays: cut the trace",
                        MAX_TRACE_SECONDS / 86_400
                    ),
                ));
            }
            let bin = offset as usize;
            if counts.len() <= bin {
                counts.resize(bin + 1, 0.0);
            }
            counts[bin] += 1.0;
        }
        if counts.len() < 2 {
            return Err(err(
                1,
                "an arrival trace needs arrivals spanning at least two seconds".into(),
            ));
        }
        Ok(Trace {
            name: name.to_string(),
            step_s: 1,
            rates: counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rate_trace() {
        let t = Trace::parse("t.csv", "t", "timestamp_s,rps\n0,1\n60,2.5\n120,0\n").unwrap();
        assert_eq!((t.step_s, t.rates.clone()), (60, vec![1.0, 2.5, 0.0]));
        assert_eq!(t.duration_s(), 180);
    }

    #[test]
    fn bins_arrivals_per_second() {
        let t = Trace::parse("a.csv", "a", "timestamp_s\n10.1\n10.5\n11.9\n13.0\n").unwrap();
        assert_eq!((t.step_s, t.rates.clone()), (1, vec![2.0, 1.0, 0.0, 1.0]));
    }

    #[test]
    fn names_the_line_of_each_problem() {
        let cases = [
            ("timestamp_s,rps\n0,1\n1,x\n", 3, "not a number"),
            ("timestamp_s,rps\n0,1\n1,-2\n", 3, "negative"),
            ("timestamp_s,rps\n0,1\n1,2\n1,3\n", 4, "repeats line 3"),
            ("timestamp_s,rps\n0,1\n2,2\n1,3\n", 4, "sort the trace"),
            ("timestamp_s,rps\n0,1\n60,2\n180,3\n", 4, "gap: 120 s"),
            ("time,value\n0,1\n", 1, "unknown header"),
            ("timestamp_s,rps\n0,1,2\n", 2, "two columns"),
            // Two rows a lifetime apart: an error, not 64 GB of per-second rates.
            (
                "timestamp_s,rps\n0,5\n4294967295,5\n",
                3,
                "longer than a day",
            ),
            ("timestamp_s\n0\n1e12\n", 3, "more than the 120 days"),
        ];
        for (text, line, what) in cases {
            let e = Trace::parse("f.csv", "f", text).expect_err(text);
            assert_eq!(e.line, line, "{e}");
            assert!(e.what.contains(what), "{e}");
            assert!(e.to_string().starts_with(&format!("f.csv:{line}: ")), "{e}");
        }
    }
}
