//! Authorization: a small ordered rule list deciding which requests are
//! allowed, so both "permitted" and "forbidden" paths can be tested.
//! The same rules answer SelfSubjectAccessReviews (`kubectl auth can-i`).

use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// The user every sandbox token authenticates as.
pub const USER: &str = "sandbox-user";

/// One rule; the first rule that matches a request decides. Empty lists and
/// `"*"` match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    pub allow: bool,
    pub verbs: Vec<String>,
    /// API groups (`""` is core).
    pub api_groups: Vec<String>,
    /// `pods`, `pods/exec`, `deployments`, ...
    pub resources: Vec<String>,
    pub namespaces: Vec<String>,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            allow: true,
            verbs: vec![],
            api_groups: vec![],
            resources: vec![],
            namespaces: vec![],
        }
    }
}

impl Rule {
    /// Allows everything.
    pub fn allow_all() -> Self {
        Rule::default()
    }

    /// Denies `verbs` on `resources` (any group, any namespace).
    pub fn deny(verbs: &[&str], resources: &[&str]) -> Self {
        Rule {
            allow: false,
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            ..Rule::default()
        }
    }

    fn matches(&self, a: &Attributes) -> bool {
        let any =
            |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == "*" || x == v);
        let resource = match &a.subresource {
            Some(s) => format!("{}/{}", a.resource, s),
            None => a.resource.clone(),
        };
        any(&self.verbs, &a.verb)
            && any(&self.api_groups, &a.group)
            && (any(&self.resources, &resource)
                || self
                    .resources
                    .iter()
                    .any(|r| r == &format!("{}/*", a.resource)))
            && (self.namespaces.is_empty()
                || a.namespace
                    .as_deref()
                    .is_some_and(|n| any(&self.namespaces, n)))
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// The 403 message a real API server writes for this request.
    pub fn forbidden_message(&self) -> String {
        let subject = match &self.name {
            Some(n) if !n.is_empty() => format!("{} \"{}\"", self.resource, n),
            _ => self.resource.clone(),
        };
        let resource = match &self.subresource {
            Some(s) => format!("{}/{}", self.resource, s),
            None => self.resource.clone(),
        };
        let scope = match &self.namespace {
            Some(ns) if !ns.is_empty() => format!("in the namespace \"{ns}\""),
            _ => "at the cluster scope".to_string(),
        };
        format!(
            "{subject} is forbidden: User \"{USER}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            self.verb, self.group
        )
    }
}

/// The rule set in force (default: allow everything).
pub struct Authz {
    rules: RwLock<Vec<Rule>>,
}

impl Default for Authz {
    fn default() -> Self {
        Authz::new(vec![Rule::allow_all()])
    }
}

impl Authz {
    pub fn new(rules: Vec<Rule>) -> Self {
        Authz {
            rules: RwLock::new(rules),
        }
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the rules (takes effect for the next request).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// Whether the request is allowed: the first matching rule decides, no
    /// match denies.
    pub fn allowed(&self, a: &Attributes) -> bool {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.matches(a))
            .is_some_and(|r| r.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_decides() {
        let z = Authz::new(vec![Rule::deny(&["list"], &["pods"]), Rule::allow_all()]);
        let mut a = Attributes {
            verb: "list".into(),
            resource: "pods".into(),
            namespace: Some("kleidia".into()),
            ..Default::default()
        };
        assert!(!z.allowed(&a));
        assert_eq!(
            a.forbidden_message(),
            "pods is forbidden: User \"sandbox-user\" cannot list resource \"pods\" in API group \"\" in the namespace \"kleidia\""
        );
        a.verb = "get".into();
        assert!(z.allowed(&a));
        assert!(!Authz::new(vec![]).allowed(&a));
    }
}
