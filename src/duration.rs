//! Durations as operators type them (`30s`, `1m30s`, `500ms`, `2h`, `7d`,
//! `2w`, or a bare number of seconds), parsed once at the edge into a
//! bounded [`Duration`], and shown back in the same units.

use std::time::Duration;

/// The longest duration any flag accepts: a year. Longer values are typos
/// (or attempts to overflow), not intentions.
pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a duration; refuses empty, unitless fractions, unknown units and
/// anything above [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text
            .parse()
            .map_err(|_| format!("{text} seconds is longer than {}", show(MAX)))?;
        return bounded(secs as f64);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{rest:?} has no unit"))?;
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..digits]))?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let scale = match &after[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            other => return Err(format!("unknown unit {other:?} (use ms, s, m, h, d or w)")),
        };
        total += number * scale;
        if !total.is_finite() || total > MAX.as_secs_f64() {
            return Err(format!("it is longer than {}", show(MAX)));
        }
        rest = &after[unit_len..];
    }
    bounded(total)
}

fn bounded(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs > MAX.as_secs_f64() {
        return Err(format!("it is longer than {}", show(MAX)));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A clap value parser for duration flags: a bad value is a usage error
/// (exit 2) naming the accepted forms.
pub fn arg(text: &str) -> Result<Duration, String> {
    parse(text).map_err(|reason| format!("{reason}; use a number with a unit, e.g. 30s, 2m, 500ms"))
}

/// Like [`arg`], refusing zero.
pub fn positive_arg(text: &str) -> Result<Duration, String> {
    match arg(text)? {
        d if d.is_zero() => Err("it must be longer than zero, e.g. 30s".into()),
        d => Ok(d),
    }
}

/// `90s` -> `1m30s`, `0.5s` -> `500ms`, `2h` -> `2h`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let frac = d.subsec_millis();
    if secs > 0 || out.is_empty() {
        if frac > 0 && out.is_empty() {
            out.push_str(&format!("{:.1}s", d.as_secs_f64()));
        } else {
            out.push_str(&format!("{secs}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn refused_forms() {
        for bad in ["", "s", "5x", "1.2.3s", "-1s", "1e9999s"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn huge_values_are_refused_not_a_panic() {
        for huge in [
            "10000000000000000000",
            "99999999999999999999999999s",
            "10000000000000000000h",
            "400d",
            "9999999w",
        ] {
            let err = parse(huge).unwrap_err();
            assert!(err.contains("longer than"), "{huge}: {err}");
        }
        assert!(positive_arg("0").is_err());
        assert!(arg("0").is_ok());
    }

    #[test]
    fn shown_back_in_the_same_units() {
        assert_eq!(show(Duration::from_secs(90)), "1m30s");
        assert_eq!(show(Duration::from_secs(30)), "30s");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_secs(7200)), "2h");
        assert_eq!(show(Duration::from_secs(86_400 + 60)), "1d1m");
    }
}
