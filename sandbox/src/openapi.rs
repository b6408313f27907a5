//! OpenAPI documents for `/openapi/v2` and `/openapi/v3`.
//!
//! kubectl and Helm read them to decide how to validate and patch objects.
//! The documents describe every registered kind permissively (object shape,
//! `x-kubernetes-group-version-kind`, no field schemas), which steers the
//! clients to the right behaviour:
//!
//! - v3: each kind's PATCH operation carries the GVK and the
//!   `fieldValidation` query parameter, so kubectl and Helm leave field
//!   validation to the server (the router may ignore the parameter). The
//!   PATCH request body does not list strategic merge patch, so kubectl's
//!   client-side apply computes strategic patches from its built-in types
//!   rather than from these schema-less documents.
//! - v2: definitions are field-less objects, which kubectl treats as maps:
//!   anything validates, and patch computation again falls back to the
//!   built-in types.

use std::sync::OnceLock;

use prost::Message;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::registry::{self, ResourceType};

/// What kube-apiserver reports as its OpenAPI `info.version`.
const KUBERNETES_VERSION: &str = "v1.33.0";

/// Content type of the protobuf `/openapi/v2` answer. Clients ask with the
/// `...v2@v1.0+protobuf` spelling; kube-openapi answers with this one, which
/// Go's mime parser accepts (kubectl's validation parses it).
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The `/openapi/v3` listing: one entry per group version, e.g.
/// `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=.."}}}`.
/// `group_versions` are `(group, version)` pairs, `""` for the core group.
/// Group versions without registered kinds are left out. The hash is the
/// SHA-512 of the group version's document, as a real server computes it.
pub fn v3_root(group_versions: &[(String, String)]) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions {
        let Some(cached) = cached_group_version(group, version) else {
            continue;
        };
        let path = gv_path(group, version);
        let hash = &cached.hash;
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// A group version's document and its hash, built once: the registry is
/// static and kubectl fetches them on every apply.
struct CachedDocument {
    doc: Value,
    hash: String,
}

fn cached_group_version(group: &str, version: &str) -> Option<&'static CachedDocument> {
    static CACHE: OnceLock<Vec<(String, String, CachedDocument)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        registered_group_versions()
            .into_iter()
            .filter_map(|(g, v)| {
                let doc = build_group_version(&g, &v)?;
                let hash = hex::encode_upper(Sha512::digest(doc.to_string().as_bytes()));
                Some((g, v, CachedDocument { doc, hash }))
            })
            .collect()
    });
    cache
        .iter()
        .find(|(g, v, _)| g == group && v == version)
        .map(|(_, _, cached)| cached)
}

/// The group versions of every registered kind, for [`v3_root`].
pub fn registered_group_versions() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for rt in registry::ALL {
        let gv = (rt.group.to_string(), rt.version.to_string());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// The `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`
/// document (OpenAPI 3.0): paths with GET/PUT/PATCH/DELETE (and list and
/// create) operations for each registered kind, and a permissive schema per
/// kind under `components.schemas`. `None` when no kind is registered in
/// that group version (answer 404).
pub fn v3_group_version(group: &str, version: &str) -> Option<Value> {
    cached_group_version(group, version).map(|c| c.doc.clone())
}

fn build_group_version(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&ResourceType> = registry::ALL
        .iter()
        .copied()
        .filter(|rt| rt.group == group && rt.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        PATCH.into(),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    schemas.insert(
        STATUS.into(),
        json!({"description": "Status is a return value for calls that don't return other objects.", "type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    for rt in kinds {
        let name = definition_name(rt);
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        let message = crate::proto::message_name(rt.group, rt.version, rt.kind);
        let mut schema = message_schema(&message, &mut schemas);
        schema["description"] = json!(format!(
            "{} of the Kubernetes API ({}).",
            rt.kind,
            rt.api_version()
        ));
        schema["properties"]["apiVersion"] = json!({"type": "string"});
        schema["properties"]["kind"] = json!({"type": "string"});
        schema["x-kubernetes-group-version-kind"] = json!([gvk.clone()]);
        schemas.insert(name.clone(), schema);
        let list_name = format!("{name}List");
        schemas.insert(
            list_name.clone(),
            json!({
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                },
                "required": ["items"],
                "x-kubernetes-group-version-kind": [{"group": rt.group, "version": rt.version, "kind": rt.list_kind()}]
            }),
        );
        let (collection, item) = resource_paths(rt);
        let namespaced = rt.namespaced;
        let mut collection_ops = Map::new();
        if namespaced {
            collection_ops.insert("parameters".into(), json!([path_param("namespace")]));
        }
        if rt.allows("list") {
            collection_ops.insert(
                "get".into(),
                operation(rt, "list", &gvk, &list_name, &[], None),
            );
        }
        if rt.allows("create") {
            collection_ops.insert(
                "post".into(),
                operation(
                    rt,
                    "post",
                    &gvk,
                    &name,
                    &["dryRun", "fieldManager", "fieldValidation"],
                    Some(&[JSON, YAML, PROTOBUF]),
                ),
            );
        }
        paths.insert(collection, Value::Object(collection_ops));
        if rt.allows("get") {
            let mut item_ops = Map::new();
            let mut params = vec![path_param("name")];
            if namespaced {
                params.push(path_param("namespace"));
            }
            item_ops.insert("parameters".into(), Value::Array(params));
            item_ops.insert("get".into(), operation(rt, "get", &gvk, &name, &[], None));
            if rt.allows("update") {
                item_ops.insert(
                    "put".into(),
                    operation(
                        rt,
                        "put",
                        &gvk,
                        &name,
                        &["dryRun", "fieldManager", "fieldValidation"],
                        Some(&[JSON, YAML, PROTOBUF]),
                    ),
                );
            }
            if rt.allows("patch") {
                item_ops.insert(
                    "patch".into(),
                    operation(
                        rt,
                        "patch",
                        &gvk,
                        &name,
                        &["dryRun", "fieldManager", "fieldValidation", "force"],
                        Some(&[APPLY_PATCH, JSON_PATCH, MERGE_PATCH]),
                    ),
                );
            }
            if rt.allows("delete") {
                item_ops.insert(
                    "delete".into(),
                    operation(
                        rt,
                        "delete",
                        &gvk,
                        STATUS,
                        &["dryRun", "gracePeriodSeconds", "propagationPolicy"],
                        None,
                    ),
                );
            }
            paths.insert(item, Value::Object(item_ops));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}

const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const APPLY_PATCH: &str = "application/apply-patch+yaml";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// The OpenAPI schema of a protobuf message from the message table, adding
/// the schemas of the messages it refers to (`$ref`) to `schemas`.
fn message_schema(message: &str, schemas: &mut Map<String, Value>) -> Value {
    let special = match message.rsplit('.').next().unwrap_or_default() {
        "Time" | "MicroTime" if message.contains(".meta.") => {
            Some(json!({"type": "string", "format": "date-time"}))
        }
        "Duration" if message.contains(".meta.") => Some(json!({"type": "string"})),
        "Quantity" | "IntOrString" => Some(json!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}]
        })),
        "RawExtension" => {
            Some(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}))
        }
        "FieldsV1" => Some(json!({"type": "object"})),
        _ => None,
    };
    if let Some(schema) = special {
        return schema;
    }
    let Some(table) = crate::proto::schema_message(message) else {
        return json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    };
    let mut properties = Map::new();
    for field in table.fields {
        let item = match field.ty {
            crate::proto::SchemaType::Str => json!({"type": "string"}),
            crate::proto::SchemaType::I32 => json!({"type": "integer", "format": "int32"}),
            crate::proto::SchemaType::I64 => json!({"type": "integer", "format": "int64"}),
            crate::proto::SchemaType::Bool => json!({"type": "boolean"}),
            crate::proto::SchemaType::Bytes => json!({"type": "string", "format": "byte"}),
            crate::proto::SchemaType::Msg(name) => {
                let schema_name = schema_name(name);
                if !schemas.contains_key(&schema_name) {
                    // Placeholder first: message graphs may be recursive.
                    schemas.insert(schema_name.clone(), json!({}));
                    let schema = message_schema(name, schemas);
                    schemas.insert(schema_name.clone(), schema);
                }
                json!({"$ref": format!("#/components/schemas/{schema_name}")})
            }
        };
        let property = if field.map {
            json!({"type": "object", "additionalProperties": item})
        } else if field.repeated {
            json!({"type": "array", "items": item})
        } else if item.get("$ref").is_some() {
            json!({"allOf": [item]})
        } else {
            item
        };
        properties.insert(field.json.to_string(), property);
    }
    json!({"type": "object", "properties": properties})
}

/// `io.k8s.api.core.v1.PodSpec` for the message `k8s.io.api.core.v1.PodSpec`.
fn schema_name(message: &str) -> String {
    match message.strip_prefix("k8s.io.") {
        Some(rest) => format!("io.k8s.{rest}"),
        None => message.to_string(),
    }
}

/// `io.k8s.api.apps.v1.Deployment`, `io.k8s.api.core.v1.Pod`,
/// `io.k8s.api.rbac.v1.Role`: the definition names a real server uses.
pub fn definition_name(rt: &ResourceType) -> String {
    let package = match rt.group {
        "" => "core",
        group => group.split('.').next().unwrap_or(group),
    };
    format!("io.k8s.api.{package}.{}.{}", rt.version, rt.kind)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn resource_paths(rt: &ResourceType) -> (String, String) {
    let base = format!("/{}", gv_path(rt.group, rt.version));
    let collection = if rt.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{base}/{}", rt.plural)
    };
    let item = format!("{collection}/{{name}}");
    (collection, item)
}

fn path_param(name: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": format!("{name} of the object"),
        "required": true,
        "schema": {"type": "string", "uniqueItems": true}
    })
}

fn query_param(name: &str) -> Value {
    let schema = match name {
        "force" => json!({"type": "boolean", "uniqueItems": true}),
        "gracePeriodSeconds" => json!({"type": "integer", "uniqueItems": true}),
        _ => json!({"type": "string", "uniqueItems": true}),
    };
    json!({"name": name, "in": "query", "schema": schema})
}

fn operation(
    rt: &ResourceType,
    action: &str,
    gvk: &Value,
    response: &str,
    params: &[&str],
    body: Option<&[&str]>,
) -> Value {
    let verb = match action {
        "list" => "list",
        "post" => "create",
        "put" => "replace",
        other => other,
    };
    let scope = if rt.namespaced { "Namespaced" } else { "" };
    let mut op = json!({
        "description": format!("{verb} {}", rt.kind),
        "operationId": format!("{verb}{scope}{}", rt.kind),
        "tags": [tag(rt)],
        "parameters": params.iter().map(|p| query_param(p)).collect::<Vec<_>>(),
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    JSON: {"schema": {"$ref": format!("#/components/schemas/{response}")}},
                    YAML: {"schema": {"$ref": format!("#/components/schemas/{response}")}}
                }
            },
            "401": {"description": "Unauthorized"}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk
    });
    if let Some(types) = body {
        let schema = if action == "patch" {
            json!({"$ref": format!("#/components/schemas/{PATCH}")})
        } else {
            json!({"$ref": format!("#/components/schemas/{}", definition_name(rt))})
        };
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": schema.clone()})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn tag(rt: &ResourceType) -> String {
    let group = if rt.group.is_empty() {
        "core"
    } else {
        rt.group.split('.').next().unwrap_or(rt.group)
    };
    format!("{group}_{}", rt.version)
}

/// The `/openapi/v2` document as JSON (`Accept: application/json`):
/// swagger 2.0 with a field-less object definition per registered kind,
/// tagged with `x-kubernetes-group-version-kind`.
pub fn v2_json() -> Value {
    let mut definitions = Map::new();
    for rt in registry::ALL {
        definitions.insert(
            definition_name(rt),
            json!({
                "description": format!("{} of the Kubernetes API ({}).", rt.kind, rt.api_version()),
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
            }),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": {},
        "definitions": definitions
    })
}

/// The `/openapi/v2` document as a gnostic `openapi.v2.Document` protobuf
/// (what kubectl and Helm ask for), with its content type. Same content as
/// [`v2_json`].
pub fn v2_protobuf() -> (&'static str, Vec<u8>) {
    let mut definitions = Vec::new();
    for rt in registry::ALL {
        let gvk_yaml = format!(
            "- group: {}\n  kind: {}\n  version: {}\n",
            yaml_string(rt.group),
            rt.kind,
            rt.version
        );
        definitions.push(gnostic::NamedSchema {
            name: definition_name(rt),
            value: Some(gnostic::Schema {
                description: format!("{} of the Kubernetes API ({}).", rt.kind, rt.api_version()),
                r#type: Some(gnostic::TypeItem {
                    value: vec!["object".into()],
                }),
                vendor_extension: vec![gnostic::NamedAny {
                    name: "x-kubernetes-group-version-kind".into(),
                    value: Some(gnostic::Any { yaml: gvk_yaml }),
                }],
            }),
        });
    }
    let doc = gnostic::Document {
        swagger: "2.0".into(),
        info: Some(gnostic::Info {
            title: "Kubernetes".into(),
            version: KUBERNETES_VERSION.into(),
        }),
        paths: Some(gnostic::Paths {}),
        definitions: Some(gnostic::Definitions {
            additional_properties: definitions,
        }),
    };
    (V2_PROTOBUF_CONTENT_TYPE, doc.encode_to_vec())
}

/// The empty core group must be quoted in YAML to stay a string.
fn yaml_string(s: &str) -> String {
    if s.is_empty() {
        "\"\"".into()
    } else {
        s.to_string()
    }
}

/// The parts of gnostic's `openapi_v2` messages (OpenAPIv2.proto) the
/// document uses, with the same field numbers.
pub mod gnostic {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Paths {}

    #[derive(Clone, PartialEq, Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Schema {
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_root_lists_every_group_version_with_a_hash() {
        let gvs = registered_group_versions();
        let root = v3_root(&gvs);
        let paths = root["paths"].as_object().unwrap();
        assert_eq!(paths.len(), gvs.len());
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        let doc = v3_group_version("apps", "v1").unwrap();
        let hash = hex::encode_upper(Sha512::digest(doc.to_string().as_bytes()));
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
        assert!(
            paths["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        assert!(
            v3_root(&[("nope.example.com".into(), "v1".into())])["paths"]
                .as_object()
                .unwrap()
                .is_empty()
        );
    }

    /// kubectl looks for a PATCH operation tagged with the kind's GVK and
    /// checks its query parameters for `fieldValidation`.
    #[test]
    fn v3_patch_operations_carry_gvk_and_field_validation() {
        let doc = v3_group_version("apps", "v1").unwrap();
        assert_eq!(doc["openapi"], "3.0.0");
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let patch = &item["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group":"apps","version":"v1","kind":"Deployment"})
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(params.contains(&"fieldValidation"), "{params:?}");
        let content = patch["requestBody"]["content"].as_object().unwrap();
        assert!(content.contains_key("application/apply-patch+yaml"));
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            schema["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let container = &doc["components"]["schemas"]["io.k8s.api.core.v1.Container"];
        assert_eq!(container["properties"]["image"]["type"], "string");
        assert_eq!(
            container["properties"]["ports"]["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ContainerPort"
        );
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group":"apps","version":"v1","kind":"Deployment"}])
        );
        // Every $ref resolves inside the document.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }

    #[test]
    fn v3_core_and_cluster_scoped_paths() {
        let doc = v3_group_version("", "v1").unwrap();
        assert!(
            doc["paths"]
                .get("/api/v1/namespaces/{namespace}/secrets/{name}")
                .is_some()
        );
        assert!(doc["paths"].get("/api/v1/namespaces/{name}").is_some());
        assert!(doc["paths"].get("/api/v1/nodes/{name}").is_some());
        assert!(v3_group_version("apps", "v2").is_none());
        let authz = v3_group_version("authorization.k8s.io", "v1").unwrap();
        let ssar = &authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
        assert!(ssar.get("post").is_some());
        assert!(ssar.get("get").is_none());
    }

    #[test]
    fn v2_protobuf_decodes_with_every_kind_and_its_gvk() {
        let (content_type, bytes) = v2_protobuf();
        assert_eq!(
            content_type,
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        );
        let doc = gnostic::Document::decode(bytes.as_slice()).unwrap();
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.unwrap().additional_properties;
        assert_eq!(defs.len(), registry::ALL.len());
        let deploy = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
            .unwrap();
        let ext = &deploy.value.as_ref().unwrap().vendor_extension[0];
        assert_eq!(ext.name, "x-kubernetes-group-version-kind");
        let yaml: Value = serde_yaml_ng::from_str(&ext.value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(
            yaml,
            json!([{"group":"apps","kind":"Deployment","version":"v1"}])
        );
        let pod = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.Pod")
            .unwrap();
        let yaml: Value = serde_yaml_ng::from_str(
            &pod.value.as_ref().unwrap().vendor_extension[0]
                .value
                .as_ref()
                .unwrap()
                .yaml,
        )
        .unwrap();
        assert_eq!(yaml, json!([{"group":"","kind":"Pod","version":"v1"}]));
        assert_eq!(
            v2_json()["definitions"].as_object().unwrap().len(),
            defs.len()
        );
    }
}
