//! `helm kleidia`: Helm's plugin environment (`HELM_NAMESPACE`,
//! `HELM_KUBECONTEXT`, `KUBECONFIG`, `HELM_BIN`, `HELM_DRIVER`,
//! `HELM_DEBUG`); flags still win.
fn main() -> std::process::ExitCode {
    // `helm kleidia <TAB>`: Helm runs the plugin's `plugin.complete`, which
    // asks here.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__complete")
    {
        return kleidia::completion::main(kleidia::cli::Flavor::Helm);
    }
    kleidia::app::main(kleidia::cli::Flavor::Helm)
}
