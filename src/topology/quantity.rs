//! Kubernetes resource quantities (`100m`, `2`, `1.5`, `128Mi`, `1G`,
//! `1e3`) as numbers: CPU in millicores, memory in bytes.

/// `250m` -> 250, `2` -> 2000, `0.5` -> 500.
pub fn cpu_millis(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| v.ceil() as u64);
    }
    let v = number(q)?;
    Some((v * 1000.0).ceil() as u64)
}

/// `128Mi` -> 134217728, `1G` -> 1000000000, `512` -> 512.
pub fn bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, scale) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * scale).ceil() as u64);
        }
    }
    if let Some(n) = q.strip_suffix('m') {
        return n.parse::<f64>().ok().map(|v| (v / 1000.0).ceil() as u64);
    }
    number(q).map(|v| v.ceil() as u64)
}

fn number(q: &str) -> Option<f64> {
    q.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// `2500` millicores -> `2.5`, bytes -> `512Mi`.
pub fn show_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

pub fn show_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (u, size) in UNITS {
        if b >= size && b.is_multiple_of(size) {
            return format!("{}{u}", b / size);
        }
    }
    for (u, size) in UNITS {
        if b >= size {
            return format!("{:.1}{u}", b as f64 / size as f64);
        }
    }
    format!("{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("x"), None);
        assert_eq!(bytes("128Mi"), Some(128 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("512"), Some(512));
        assert_eq!(show_cpu(2000), "2");
        assert_eq!(show_cpu(250), "250m");
        assert_eq!(show_bytes(128 << 20), "128Mi");
        assert_eq!(show_bytes(23 << 30), "23Gi");
        assert_eq!(show_bytes(1536 << 20), "1536Mi");
        assert_eq!(show_bytes((1536 << 20) + 1), "1.5Gi");
    }
}
