//! `backup create` end to end over local sources: the real `pg_dumpall` of
//! a throwaway PostgreSQL, a real OpenBao's raft snapshot (or a real `tar`
//! of its data folder), release values; then `verify` on the result.

mod backup_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use age::secrecy::{ExposeSecret, SecretString};
use backup_support::*;
use futures::FutureExt;
use futures::future::BoxFuture;
use kleidia::backup::create::{
    BackupSources, ClusterFacts, CreateError, CreateOptions, ReleaseSnapshot, SourceError,
    SourceStream, TokenSource, create_bundle,
};
use kleidia::backup::crypto::{Decryption, Encryption};
use kleidia::backup::local_postgres::ThrowawayPostgres;
use kleidia::backup::manifest::{Component, FileKind, OpenBaoStorage, ReleaseRecord};
use kleidia::backup::verify::{RestoreOutcome, Status, VerifyOptions, verify_bundle};
use kleidia::commands::backup::{CreateArgs, OutputFormat, run_create};

struct LocalSources<'a> {
    pg: &'a ThrowawayPostgres,
    bao: &'a ThrowawayOpenBao,
    storage: OpenBaoStorage,
    /// Stop sending after this many dump bytes and hang, like a stuck exec.
    stall_after: Option<usize>,
    /// Set when the stalled stream has sent its bytes.
    stalled: Arc<AtomicBool>,
    /// Make the data-folder archive's process exit with this code after
    /// sending the whole archive.
    archive_exit: Option<i32>,
}

impl<'a> LocalSources<'a> {
    fn new(pg: &'a ThrowawayPostgres, bao: &'a ThrowawayOpenBao) -> Self {
        LocalSources {
            pg,
            bao,
            storage: OpenBaoStorage::Raft,
            stall_after: None,
            stalled: Arc::new(AtomicBool::new(false)),
            archive_exit: None,
        }
    }
}

fn releases() -> Vec<ReleaseSnapshot> {
    ["kleidia-platform", "kleidia-data", "kleidia-services"]
        .iter()
        .enumerate()
        .map(|(i, name)| ReleaseSnapshot {
            record: ReleaseRecord {
                name: (*name).to_owned(),
                chart: (*name).to_owned(),
                chart_version: format!("1.{i}.0"),
                app_version: Some("2.3.0".into()),
                revision: i as u64 + 1,
                status: Some("deployed".into()),
            },
            values_yaml: format!("release: {name}\ndb:\n  password: s3cret-{i}\n").into_bytes(),
        })
        .collect()
}

impl BackupSources for LocalSources<'_> {
    fn facts(&mut self) -> BoxFuture<'_, Result<ClusterFacts, SourceError>> {
        async move {
            let mut facts = ClusterFacts {
                context: Some("local".into()),
                server: Some("https://127.0.0.1:6443".into()),
                ..Default::default()
            };
            facts.versions.insert(
                "postgres".into(),
                self.pg
                    .version()
                    .map_err(|e| SourceError::new(e.to_string()))?,
            );
            let (_, health) = self
                .bao
                .call("GET", "/v1/sys/health", None, serde_json::Value::Null)
                .await;
            facts.versions.insert(
                "openbao".into(),
                health["version"].as_str().unwrap_or("?").to_owned(),
            );
            Ok(facts)
        }
        .boxed()
    }

    fn postgres_dump(&mut self) -> BoxFuture<'_, Result<SourceStream, SourceError>> {
        async move {
            let mut child = pg_dumpall(self.pg);
            let stdout = child.stdout.take().unwrap();
            if let Some(limit) = self.stall_after {
                let stalled = self.stalled.clone();
                let (mut tx, rx) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut head = vec![0u8; limit];
                    let mut stdout = stdout;
                    stdout.read_exact(&mut head).await.unwrap();
                    tx.write_all(&head).await.unwrap();
                    stalled.store(true, Ordering::SeqCst);
                    // Hold the stream open forever, like a hung exec.
                    std::future::pending::<()>().await;
                    drop((tx, child));
                });
                return Ok(SourceStream::from_reader(rx));
            }
            Ok(SourceStream::new(stdout, async move {
                let status = child
                    .wait()
                    .await
                    .map_err(|e| SourceError::new(e.to_string()))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(SourceError::new(format!("pg_dumpall exited with {status}")))
                }
            }))
        }
        .boxed()
    }

    fn openbao_storage(&mut self) -> BoxFuture<'_, Result<OpenBaoStorage, SourceError>> {
        let s = self.storage;
        async move { Ok(s) }.boxed()
    }

    fn openbao_raft_snapshot<'a>(
        &'a mut self,
        token: &'a SecretString,
    ) -> BoxFuture<'a, Result<SourceStream, SourceError>> {
        async move {
            let conn = tokio::net::TcpStream::connect(self.bao.addr)
                .await
                .map_err(|e| SourceError::new(e.to_string()))?;
            let stream =
                kleidia::backup::openbao::raft_snapshot(conn, &self.bao.addr.to_string(), token)
                    .await
                    .map_err(|e| SourceError::new(e.to_string()))?;
            Ok(SourceStream::from_reader(stream))
        }
        .boxed()
    }

    fn openbao_data_archive(&mut self) -> BoxFuture<'_, Result<SourceStream, SourceError>> {
        async move {
            let script = format!(
                "tar -C \"$0\" -cf - . && exit {}",
                self.archive_exit.unwrap_or(0)
            );
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(self.bao.dir.path().join("raft"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| SourceError::new(format!("cannot run tar: {e}")))?;
            let stdout = child.stdout.take().unwrap();
            Ok(SourceStream::new(stdout, async move {
                let status = child
                    .wait()
                    .await
                    .map_err(|e| SourceError::new(e.to_string()))?;
                // GNU tar exits 1 when a file changed while being read.
                if status.code().is_some_and(|c| c <= 1) {
                    Ok(())
                } else {
                    Err(SourceError::new(format!(
                        "the archive of OpenBao's data folder failed: tar exited with {status}"
                    )))
                }
            }))
        }
        .boxed()
    }

    fn secret_value<'a>(
        &'a mut self,
        _name: &'a str,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<SecretString, SourceError>> {
        let token = self.bao.root_token.clone();
        async move { Ok(token) }.boxed()
    }

    fn unseal_key_secret(&mut self) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kleidia-platform-openbao-unseal", "namespace": "kleidia"},
            "stringData": {"unseal-key": self.bao.unseal_key.expose_secret()},
        });
        async move { Ok(serde_json::to_vec(&secret).unwrap()) }.boxed()
    }

    fn releases(&mut self) -> BoxFuture<'_, Result<Vec<ReleaseSnapshot>, SourceError>> {
        async move { Ok(releases()) }.boxed()
    }
}

fn never() -> impl std::future::Future<Output = String> {
    std::future::pending()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_full_backup_verifies_and_restores() {
    let pg = postgres_with_data(3000);
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = age::x25519::Identity::generate();
    let id_file = dir.path().join("key.txt");
    std::fs::write(&id_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let out = dir.path().join("backups");

    let mut opts = CreateOptions::new(&out, "kleidia");
    opts.progress = false;
    opts.encryption = Some(Encryption::to_recipients(&[key.to_public().to_string()]).unwrap());
    opts.include_unseal_key = true;
    opts.token = TokenSource::Secret {
        name: "openbao-root".into(),
        key: "token".into(),
    };
    let mut sources = LocalSources::new(&pg, &bao);
    let created = create_bundle(&opts, &mut sources, never())
        .await
        .expect("backup");

    let m = &created.manifest;
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "postgres.sql.zst.age",
        "openbao.snap.age",
        "openbao-unseal-key.json.age",
        "helm/kleidia-data.values.yaml.age",
        "helm/kleidia-services.json.age",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(m.files.iter().all(|f| f.encrypted));
    assert!(
        !created.warnings.iter().any(|w| w.contains("not encrypted")),
        "{:?}",
        created.warnings
    );
    assert_eq!(m.components, Component::ALL.to_vec());
    assert_eq!(m.context.as_deref(), Some("local"));
    assert_eq!(m.versions["postgres"], pg.version().unwrap());
    assert_eq!(m.releases.len(), 3);
    let ob = m.openbao.as_ref().unwrap();
    assert_eq!(ob.storage, OpenBaoStorage::Raft);
    assert!(ob.unseal_key_included);

    // Neither the unseal key nor a values secret is stored in clear.
    let unseal = std::fs::read(created.path.join("openbao-unseal-key.json.age")).unwrap();
    let text = String::from_utf8_lossy(&unseal);
    assert!(!text.contains(bao.unseal_key.expose_secret()));
    let manifest_text = std::fs::read_to_string(created.path.join("manifest.json")).unwrap();
    assert!(!manifest_text.contains("s3cret"));

    let dec = Decryption::from_identity_file(&id_file).unwrap();
    let report = verify_bundle(
        &created.path,
        &VerifyOptions {
            decryption: Some(&dec),
            restore_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok, "{:?}", report.failures());
    let snap = report
        .files
        .iter()
        .find(|f| f.kind == FileKind::OpenbaoRaftSnapshot)
        .unwrap();
    assert!(
        snap.checks
            .iter()
            .any(|c| c.name == "snapshot-sha256sums" && c.status == Status::Ok)
    );
    let Some(RestoreOutcome::Ok(restored)) = &report.restore_test else {
        panic!("{:?}", report.restore_test)
    };
    assert_eq!(
        restored.database("kleidia").unwrap().tables,
        pg.table_counts("kleidia").unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_storage_is_archived_with_a_consistency_warning() {
    let pg = ThrowawayPostgres::start().unwrap();
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sources = LocalSources::new(&pg, &bao);
    sources.storage = OpenBaoStorage::File;
    let args = CreateArgs {
        dir: dir.path().to_owned(),
        components: vec![Component::Platform],
        encrypt_to: vec![],
        passphrase_env: None,
        openbao_token_env: None,
        openbao_token_secret: None,
        include_unseal_key: false,
        timeout: std::time::Duration::from_secs(60),
        require_encryption: false,
    };
    let mut out = Vec::new();
    let outcome = run_create(
        &args,
        "kleidia",
        &mut sources,
        OutputFormat::Json,
        "kubectl kleidia",
        &mut out,
    )
    .await
    .expect("backup");
    assert!(outcome.ok);
    let created: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(created["manifest"]["openbao"]["storage"], "file");
    assert!(
        created["manifest"]["openbao"]["warning"]
            .as_str()
            .unwrap()
            .contains("inconsistent")
    );
    let bundle = Path::new(created["path"].as_str().unwrap());
    let report = verify_bundle(bundle, &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{:?}", report.failures());
    let tar = report.files[0]
        .checks
        .iter()
        .find(|c| c.name == "tar")
        .unwrap();
    assert_eq!(tar.status, Status::Ok);
    // The archive holds OpenBao's real raft database.
    let entries = tar.detail.as_deref().unwrap();
    assert!(!entries.starts_with("0 "), "{entries}");

    // The human report of verify says so too.
    let mut text = Vec::new();
    let outcome = kleidia::commands::backup::run_local(
        &kleidia::commands::backup::BackupCommand::Verify(kleidia::commands::backup::VerifyArgs {
            bundle: bundle.to_owned(),
            restore_test: false,
            identity: None,
            passphrase_env: None,
        }),
        OutputFormat::Table,
        &mut text,
    )
    .await
    .unwrap();
    assert!(outcome.ok);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("openbao-data.tar.zst") && text.contains("tar ok"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("verify: OK"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_backup_warns_once_what_it_holds_in_clear() {
    let pg = postgres_with_data(100);
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sources = LocalSources::new(&pg, &bao);
    let args = CreateArgs {
        dir: dir.path().to_owned(),
        components: Component::ALL.to_vec(),
        encrypt_to: vec![],
        passphrase_env: None,
        openbao_token_env: None,
        openbao_token_secret: Some(("openbao-root".into(), "token".into())),
        include_unseal_key: false,
        timeout: std::time::Duration::from_secs(60),
        require_encryption: false,
    };
    let outcome = run_create(
        &args,
        "kleidia",
        &mut sources,
        OutputFormat::Json,
        "kubectl kleidia",
        &mut Vec::new(),
    )
    .await
    .expect("backup");
    assert!(outcome.ok);
    let clear: Vec<&String> = outcome
        .warnings
        .iter()
        .filter(|w| w.contains("not encrypted"))
        .collect();
    assert_eq!(clear.len(), 1, "{:?}", outcome.warnings);
    for what in [
        "database dump",
        "OpenBao snapshot",
        "Helm values",
        "passwords",
        "--encrypt-to",
        "--passphrase-env",
    ] {
        assert!(clear[0].contains(what), "{what} not in: {}", clear[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_process_that_fails_after_its_output_fails_the_backup() {
    let pg = ThrowawayPostgres::start().unwrap();
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sources = LocalSources::new(&pg, &bao);
    sources.storage = OpenBaoStorage::File;
    sources.archive_exit = Some(3);
    let mut opts = CreateOptions::new(dir.path(), "kleidia");
    opts.progress = false;
    opts.components = vec![Component::Platform, Component::Values];
    let err = create_bundle(&opts, &mut sources, never())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            CreateError::Source {
                component: Component::Platform,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("exited with") && msg.contains("no bundle was created"),
        "{msg}"
    );
    assert_no_bundle_folders(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unseal_key_is_refused_in_an_unencrypted_bundle() {
    let pg = ThrowawayPostgres::start().unwrap();
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CreateOptions::new(dir.path(), "kleidia");
    opts.include_unseal_key = true;
    let err = create_bundle(&opts, &mut LocalSources::new(&pg, &bao), never())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CreateError::UnsealKeyNeedsEncryption),
        "{err}"
    );
    assert_no_bundle_folders(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_openbao_token_names_the_variables_and_leaves_no_bundle() {
    let pg = ThrowawayPostgres::start().unwrap();
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CreateOptions::new(dir.path(), "kleidia");
    opts.progress = false;
    opts.token = TokenSource::Env(vec!["KLEIDIA_TEST_UNSET_TOKEN_VAR".into()]);
    let err = create_bundle(&opts, &mut LocalSources::new(&pg, &bao), never())
        .await
        .unwrap_err();
    assert!(matches!(err, CreateError::NoToken { .. }), "{err}");
    assert!(err.to_string().contains("KLEIDIA_TEST_UNSET_TOKEN_VAR"));
    assert_no_bundle_folders(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interruption_during_the_dump_leaves_no_bundle_and_says_so() {
    let pg = postgres_with_data(5000);
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CreateOptions::new(dir.path(), "kleidia");
    opts.progress = false;
    let mut sources = LocalSources::new(&pg, &bao);
    sources.stall_after = Some(100_000);
    let stalled = sources.stalled.clone();
    let watched = dir.path().to_owned();
    // "Ctrl-C" once the dump is half-way and its file exists in the partial folder.
    let interrupt = async move {
        loop {
            let writing = folder_names(&watched).iter().any(|n| {
                n.ends_with(".partial") && watched.join(n).join("postgres.sql.zst").exists()
            });
            if stalled.load(Ordering::SeqCst) && writing {
                return "Ctrl-C".to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let err = create_bundle(&opts, &mut sources, interrupt)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CreateError::Interrupted { .. }), "{msg}");
    assert!(
        msg.contains("Ctrl-C") && msg.contains("postgres.sql.zst"),
        "{msg}"
    );
    assert_no_bundle_folders(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bundle_in_the_same_second_takes_the_next() {
    let pg = postgres_with_data(10);
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backups");
    let mut opts = CreateOptions::new(&out, "kleidia");
    opts.progress = false;
    opts.components = vec![Component::Values];
    let mut sources = LocalSources::new(&pg, &bao);
    let first = create_bundle(&opts, &mut sources, never())
        .await
        .expect("first backup");
    // The same instant again, as when an upgrade's backup follows a
    // backup within the second.
    let second = create_bundle(&opts, &mut sources, never())
        .await
        .expect("a bundle of the same second waits for the next");
    assert_ne!(first.path, second.path);
    assert!(first.path.is_dir() && second.path.is_dir());
    assert!(second.manifest.started_at > first.manifest.started_at);
}
