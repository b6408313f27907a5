//! The `versions` table: releases, history, servers, compatibility and the
//! problems found, in the one table style.

use comfy_table::Cell;

use super::schema::VersionsReport;
use crate::report::{Mark, Painter, one_line, or_dash, short_time};

fn status_mark(status: &str) -> Mark {
    match status {
        "deployed" => Mark::Ok,
        s if s.starts_with("pending") => Mark::Warn,
        _ => Mark::Bad,
    }
}

/// Writes the report as tables.
pub fn render_table(
    r: &VersionsReport,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        p.title(&format!(
            "Kleidia in namespace {} (context {}, {})",
            r.namespace, r.context, r.server
        ))
    )?;
    let mut t = p.table(&[
        "COMPONENT",
        "RELEASE",
        "CHART",
        "CHART VERSION",
        "APP VERSION",
        "REVISION",
        "STATUS",
        "LAST DEPLOYED",
    ]);
    let mut notes = Vec::new();
    let green = r.green.as_ref().map(|g| {
        let mut row = g.release.clone();
        row.release = format!("{} (green)", row.release);
        row
    });
    for c in r.components.iter().chain(green.as_ref()) {
        let status = match (&c.status, &c.error) {
            (_, Some(e)) => {
                notes.push(format!("{}: {e}", c.release));
                p.marked("error", Mark::Bad)
            }
            (Some(s), None) => {
                if status_mark(s) != Mark::Ok {
                    notes.push(format!(
                        "{} is {s} at revision {}{}; see `helm history {} -n {}`",
                        c.release,
                        c.revision.unwrap_or_default(),
                        c.description
                            .as_deref()
                            .map(|d| format!(" ({})", one_line(d, 100)))
                            .unwrap_or_default(),
                        c.release,
                        r.namespace
                    ));
                }
                p.marked(s, status_mark(s))
            }
            (None, None) => p.marked("unknown", Mark::Unknown),
        };
        t.add_row(vec![
            Cell::new(c.component.as_str()),
            Cell::new(&c.release),
            Cell::new(or_dash(&c.chart)),
            Cell::new(or_dash(&c.chart_version)),
            Cell::new(or_dash(&c.app_version)),
            Cell::new(
                c.revision
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            status,
            Cell::new(short_time(c.last_deployed.as_deref())),
        ]);
    }
    writeln!(out, "{t}")?;

    if r.components.iter().any(|c| c.history.is_some()) {
        writeln!(out, "\n{}", p.title("History"))?;
        let mut h = p.table(&[
            "RELEASE",
            "REVISION",
            "STATUS",
            "CHART VERSION",
            "APP VERSION",
            "UPDATED",
            "DESCRIPTION",
        ]);
        for c in &r.components {
            for rev in c.history.iter().flatten() {
                h.add_row(vec![
                    Cell::new(&c.release),
                    Cell::new(rev.revision),
                    p.marked(
                        &rev.status,
                        if rev.status == "superseded" {
                            Mark::Ok
                        } else {
                            status_mark(&rev.status)
                        },
                    ),
                    Cell::new(or_dash(&rev.chart_version)),
                    Cell::new(or_dash(&rev.app_version)),
                    Cell::new(short_time(rev.last_deployed.as_deref())),
                    Cell::new(one_line(&rev.description, 60)),
                ]);
            }
        }
        writeln!(out, "{h}")?;
    }

    writeln!(out)?;
    let s = &r.servers;
    let mut t = p.table(&["SERVER", "VERSION", "STATE", "WHERE"]);
    let mut server_row =
        |name: &str, version: &Option<String>, state: (String, Mark), place: String| {
            t.add_row(vec![
                Cell::new(name),
                Cell::new(or_dash(version)),
                p.marked(state.0, state.1),
                Cell::new(place),
            ]);
        };
    let answered =
        |e: &Option<String>, what: &str, notes: &mut Vec<String>| -> Option<(String, Mark)> {
            e.as_ref().map(|e| {
                notes.push(format!("{what}: {e}"));
                ("error".to_string(), Mark::Bad)
            })
        };
    let k8s_state =
        answered(&s.kubernetes.error, "Kubernetes", &mut notes).unwrap_or(("up".into(), Mark::Ok));
    server_row(
        "Kubernetes",
        &s.kubernetes.version,
        k8s_state,
        r.server.clone(),
    );
    let helm_state = answered(&s.helm.error, "Helm", &mut notes).unwrap_or_else(|| {
        if s.helm.version.is_some() {
            ("found".into(), Mark::Ok)
        } else {
            ("not found".into(), Mark::Unknown)
        }
    });
    server_row(
        "Helm (client)",
        &s.helm.version,
        helm_state,
        or_dash(&s.helm.path),
    );
    let pg_state =
        answered(&s.postgresql.error, "PostgreSQL", &mut notes).unwrap_or(("up".into(), Mark::Ok));
    let pg_place = match (
        &s.postgresql.pod,
        &s.postgresql.user,
        &s.postgresql.database,
    ) {
        (Some(pod), Some(u), Some(d)) => format!("pod {pod}, user {u}, db {d}"),
        _ => "-".into(),
    };
    server_row("PostgreSQL", &s.postgresql.version, pg_state, pg_place);
    let bao_state = answered(&s.openbao.error, "OpenBao", &mut notes).unwrap_or_else(|| {
        match (s.openbao.initialized, s.openbao.sealed) {
            (Some(false), _) => ("not initialised".into(), Mark::Bad),
            (_, Some(true)) => ("sealed".into(), Mark::Bad),
            (_, Some(false)) => ("unsealed".into(), Mark::Ok),
            _ => ("unknown".into(), Mark::Unknown),
        }
    });
    server_row(
        "OpenBao",
        &s.openbao.version,
        bao_state,
        s.openbao
            .pod
            .as_ref()
            .map(|p| format!("pod {p}"))
            .unwrap_or_else(|| "-".into()),
    );
    let be_state = answered(&s.backend.error, "Backend", &mut notes).unwrap_or_else(|| {
        (
            s.backend.status.clone().unwrap_or_else(|| "up".into()),
            Mark::Ok,
        )
    });
    let be_place = match (&s.backend.service, s.backend.port) {
        (Some(svc), Some(port)) => format!("service {svc}:{port}"),
        _ => "-".into(),
    };
    server_row("Backend", &s.backend.version, be_state, be_place);
    if let Some(g) = &r.green {
        let b = &g.backend;
        let state = answered(&b.error, "Backend (green)", &mut notes)
            .unwrap_or_else(|| (b.status.clone().unwrap_or_else(|| "up".into()), Mark::Ok));
        let place = match (&b.service, b.port) {
            (Some(svc), Some(port)) => format!("service {svc}:{port}"),
            _ => "-".into(),
        };
        server_row("Backend (green)", &b.version, state, place);
        notes.push(format!(
            "a blue-green upgrade is waiting: {} runs beside {}; finish it with `upgrade --promote` or `upgrade --abort`",
            g.release.release,
            r.components
                .iter()
                .find(|c| c.component == crate::topology::Component::Services)
                .map(|c| c.release.as_str())
                .unwrap_or("the services release")
        ));
    }
    writeln!(out, "{t}")?;

    writeln!(out)?;
    let mut t = p.table(&["COMPATIBILITY", "REQUIRED", "FOUND", ""]);
    for c in &r.compatibility {
        t.add_row(vec![
            Cell::new(&c.item),
            Cell::new(c.required_text()),
            Cell::new(c.found.clone().unwrap_or_else(|| "unknown".into())),
            p.mark(Mark::from_ok(c.ok)),
        ]);
    }
    writeln!(out, "{t}")?;

    if !notes.is_empty() {
        writeln!(out, "\n{}", p.title("Problems"))?;
        for n in notes {
            writeln!(out, "  - {n}")?;
        }
    }
    Ok(())
}
