//! `kubectl kleidia`: kubectl conventions (`--kubeconfig`, `--context`, `-n`).
fn main() -> std::process::ExitCode {
    kleidia::app::main(kleidia::cli::Flavor::Kubectl)
}
