//! What Ctrl-C during `verify --restore-test` relies on: every throwaway
//! PostgreSQL of the process can be stopped and removed at once. Its own
//! test binary, since it stops every server of the process.

use kleidia::backup::local_postgres::{ThrowawayPostgres, stop_all_throwaway_servers};

#[test]
fn an_interruption_handler_can_stop_every_throwaway_server() {
    let first = ThrowawayPostgres::start().unwrap();
    let second = ThrowawayPostgres::start().unwrap();
    let sockets = [
        first.socket_dir().to_owned(),
        second.socket_dir().to_owned(),
    ];
    assert!(first.version().is_ok() && second.version().is_ok());
    assert_eq!(stop_all_throwaway_servers(), 2);
    for s in &sockets {
        assert!(!s.exists(), "{} was not removed", s.display());
    }
    assert!(first.version().is_err(), "the server still answers");
    assert_eq!(stop_all_throwaway_servers(), 0);
    // Dropping after an emergency stop is harmless.
    drop((first, second));
    // A server stopped normally is no longer on the list.
    let third = ThrowawayPostgres::start().unwrap();
    third.stop().unwrap();
    assert_eq!(stop_all_throwaway_servers(), 0);
}
