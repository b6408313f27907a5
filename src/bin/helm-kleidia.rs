//! `helm kleidia`: Helm's plugin environment (`HELM_NAMESPACE`,
//! `HELM_KUBECONTEXT`, `KUBECONFIG`, `HELM_BIN`, `HELM_DRIVER`,
//! `HELM_DEBUG`); flags still win.
fn main() -> std::process::ExitCode {
    kleidia::app::main(kleidia::cli::Flavor::Helm)
}
