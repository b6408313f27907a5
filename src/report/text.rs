//! Small text forms shared by every table: times, sizes, one-line cells.

/// `2026-02-01T10:00:00.123456789Z` -> `2026-02-01 10:00:00 UTC`.
pub fn short_time(t: Option<&str>) -> String {
    match t {
        None | Some("") => "-".into(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| {
                d.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            })
            .unwrap_or_else(|_| t.to_string()),
    }
}

/// Shortens `text` to one line of at most `max` characters for tables.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!(
            "{}...",
            flat.chars().take(max.saturating_sub(3)).collect::<String>()
        )
    }
}

/// The value, or `-` for none.
pub fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// Bytes for people (KiB, MiB, ...).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shortened_for_tables() {
        assert_eq!(
            short_time(Some("2026-02-01T10:00:00.123456789Z")),
            "2026-02-01 10:00:00 UTC"
        );
        assert_eq!(
            short_time(Some("2026-02-01T12:00:00+02:00")),
            "2026-02-01 10:00:00 UTC"
        );
        assert_eq!(short_time(Some("garbage")), "garbage");
        assert_eq!(short_time(None), "-");
    }

    #[test]
    fn sizes_and_cells() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdefghijkl", 8), "abcde...");
        assert_eq!(or_dash(&None), "-");
    }
}
