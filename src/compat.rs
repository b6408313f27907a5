//! The compatibility matrix (the runbook's), as data in one place:
//! `versions` shows it, `preflight` checks against it.

use serde::Serialize;

use crate::probes::parse_version;

/// One line of the matrix: the oldest version supported and, where there
/// is one, the newest major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub item: &'static str,
    /// (major, minor)
    pub min: (u64, u64),
    /// The newest major release supported, when there is a ceiling.
    pub max_major: Option<u64>,
}

pub const KUBERNETES: Requirement = Requirement {
    item: "Kubernetes",
    min: (1, 24),
    max_major: None,
};
pub const HELM: Requirement = Requirement {
    item: "Helm",
    min: (3, 8),
    max_major: None,
};
/// PostgreSQL 13 and newer, up to the newest major the Kleidia charts
/// support (a newer server needs charts that declare it).
pub const POSTGRESQL: Requirement = Requirement {
    item: "PostgreSQL",
    min: (13, 0),
    max_major: Some(17),
};
pub const OPENBAO: Requirement = Requirement {
    item: "OpenBao",
    min: (2, 4),
    max_major: None,
};

/// The whole matrix, in the order it is shown.
pub const MATRIX: [Requirement; 4] = [KUBERNETES, HELM, POSTGRESQL, OPENBAO];

impl Requirement {
    /// `>= 1.24`, `>= 13`.
    pub fn required(&self) -> String {
        if self.min.1 == 0 {
            format!(">= {}", self.min.0)
        } else {
            format!(">= {}.{}", self.min.0, self.min.1)
        }
    }

    /// Whether `found` (any version text) is supported; `None` when it
    /// holds no version.
    pub fn accepts(&self, found: &str) -> Option<bool> {
        let v = parse_version(found)?;
        Some((v.major, v.minor) >= self.min && self.max_major.is_none_or(|max| v.major <= max))
    }

    /// The row for what was found.
    pub fn check(&self, found: Option<&str>) -> CompatibilityRow {
        CompatibilityRow {
            item: self.item.to_string(),
            required: self.required(),
            newest_major: self.max_major,
            found: found.map(str::to_string),
            ok: found.and_then(|f| self.accepts(f)),
        }
    }
}

/// A matrix line against what was found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompatibilityRow {
    pub item: String,
    pub required: String,
    /// The newest major supported, when there is a ceiling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_major: Option<u64>,
    pub found: Option<String>,
    /// `null` when the version is unknown (probe failed, helm not found).
    pub ok: Option<bool>,
}

impl CompatibilityRow {
    /// The REQUIRED cell of a table: `>= 13, <= 17.x`.
    pub fn required_text(&self) -> String {
        match self.newest_major {
            Some(max) => format!("{}, <= {max}.x", self.required),
            None => self.required.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimums_and_ceiling() {
        assert_eq!(KUBERNETES.accepts("v1.33.1"), Some(true));
        assert_eq!(KUBERNETES.accepts("v1.23.9"), Some(false));
        assert_eq!(HELM.accepts("v3.8.0"), Some(true));
        assert_eq!(HELM.accepts("v3.7.2"), Some(false));
        assert_eq!(HELM.accepts("v4.1.4"), Some(true));
        assert_eq!(POSTGRESQL.accepts("12.4"), Some(false));
        assert_eq!(POSTGRESQL.accepts("15.8"), Some(true));
        assert_eq!(POSTGRESQL.accepts("18.1"), Some(false));
        assert_eq!(OPENBAO.accepts("2.3.0"), Some(false));
        assert_eq!(OPENBAO.accepts("none"), None);
        assert_eq!(
            POSTGRESQL.check(Some("18.0")).required_text(),
            ">= 13, <= 17.x"
        );
        assert_eq!(KUBERNETES.required(), ">= 1.24");
    }
}
