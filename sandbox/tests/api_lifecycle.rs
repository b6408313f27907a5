//! Starting and stopping sandboxes from the library, in plain and async
//! tests alike.

use std::net::TcpStream;

use kleidia_sandbox::server::{Sandbox, SandboxOptions};

#[test]
fn dropping_a_sandbox_stops_its_server_and_removes_its_temp_dir() {
    let sb = Sandbox::start(SandboxOptions::default()).unwrap();
    let addr = sb.addr();
    let dir = sb.data_dir().to_path_buf();
    assert!(TcpStream::connect(addr).is_ok());
    assert!(sb.kubeconfig_path().starts_with(&dir));
    drop(sb);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens after drop"
    );
    assert!(!dir.exists(), "the temporary data folder is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_start_and_stop_inside_async_code() {
    for _ in 0..3 {
        let sb = Sandbox::start(SandboxOptions::default()).unwrap();
        let client =
            kleidia_sandbox::server::client::Client::new(sb.url(), sb.ca_pem(), Some(sb.token()))
                .unwrap();
        let reply = client
            .send(
                hyper::Method::GET,
                "/api/v1/namespaces/kleidia",
                &[],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["status"]["phase"], "Active");
        drop(sb);
    }
}

#[test]
fn a_given_data_dir_is_kept_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let sb = Sandbox::start(SandboxOptions {
        dir: Some(dir.clone()),
        ..SandboxOptions::default()
    })
    .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(sb.kubeconfig_path()), 0o600);
    sb.shutdown();
    assert!(dir.join("kubeconfig").exists());
}
