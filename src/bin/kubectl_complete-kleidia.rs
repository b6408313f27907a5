//! `kubectl_complete-kleidia`: kubectl's completion hook for plugins. On
//! `kubectl kleidia <TAB>` kubectl runs it with the words typed after
//! `kleidia` and reads the candidates back (Cobra's protocol).
fn main() -> std::process::ExitCode {
    kleidia::completion::main(kleidia::cli::Flavor::Kubectl)
}
