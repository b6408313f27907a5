//! How results reach people and scripts, for every command: one
//! [`OutputFormat`], one table style (borderless columns like `kubectl get`,
//! coloured only on a terminal, never with `NO_COLOR`/`--no-color`), JSON
//! and YAML with stable shapes, and one place that prints errors, warnings
//! and debug lines on stderr.

mod text;

use std::io::{IsTerminal, Write};

use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};
use owo_colors::OwoColorize;
use serde::Serialize;

pub use text::{human_size, one_line, or_dash, short_time};

/// The output formats every command offers (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    Json,
    Yaml,
}

/// Whether a stream may carry colour: a terminal, no `NO_COLOR`, no
/// `--no-color`.
pub fn color_allowed(is_terminal: bool, no_color_flag: bool, no_color_env: bool) -> bool {
    is_terminal && !no_color_flag && !no_color_env
}

/// The marks used in tables and their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Bad,
    Warn,
    Unknown,
}

impl Mark {
    pub fn from_ok(ok: Option<bool>) -> Self {
        match ok {
            Some(true) => Mark::Ok,
            Some(false) => Mark::Bad,
            None => Mark::Unknown,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Bad => "FAIL",
            Mark::Warn => "warn",
            Mark::Unknown => "?",
        }
    }

    fn color(self) -> Color {
        match self {
            Mark::Ok => Color::Green,
            Mark::Bad => Color::Red,
            Mark::Warn => Color::Yellow,
            Mark::Unknown => Color::DarkGrey,
        }
    }
}

/// Builds tables and styled text, coloured or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Painter {
    pub color: bool,
}

impl Painter {
    /// The one table style: borderless columns, bold headers on a terminal.
    pub fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic);
        if self.color {
            t.enforce_styling();
        } else {
            t.force_no_tty();
        }
        t.set_header(header.iter().map(|h| self.header(h)));
        t
    }

    fn header(&self, text: &str) -> Cell {
        let c = Cell::new(text);
        if self.color {
            c.add_attribute(Attribute::Bold)
        } else {
            c
        }
    }

    pub fn mark(&self, mark: Mark) -> Cell {
        self.colored(mark.symbol(), mark.color())
    }

    /// A cell with text coloured like `mark` (plain when `Ok`).
    pub fn marked(&self, text: impl ToString, mark: Mark) -> Cell {
        if mark == Mark::Ok {
            Cell::new(text.to_string())
        } else {
            self.colored(&text.to_string(), mark.color())
        }
    }

    pub fn colored(&self, text: &str, color: Color) -> Cell {
        let c = Cell::new(text);
        if self.color { c.fg(color) } else { c }
    }

    /// A line of text coloured like `mark`, outside a table.
    pub fn paint(&self, text: &str, mark: Mark) -> String {
        if !self.color {
            return text.to_string();
        }
        match mark {
            Mark::Ok => text.green().to_string(),
            Mark::Bad => text.red().bold().to_string(),
            Mark::Warn => text.yellow().to_string(),
            Mark::Unknown => text.dimmed().to_string(),
        }
    }

    pub fn title(&self, text: &str) -> String {
        if self.color {
            text.bold().to_string()
        } else {
            text.to_string()
        }
    }
}

/// Writes `value` in `format`: JSON and YAML from its serde shape, the table
/// form from `table`. Everything goes to stdout at once.
pub fn emit<T: Serialize>(
    format: OutputFormat,
    value: &T,
    table: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Table => table(&mut out)?,
        machine => write_machine(machine, value, &mut out)?,
    }
    write_stdout(&out)
}

/// Writes `value` as JSON or YAML (the documented machine formats).
pub fn write_machine<T: Serialize>(
    format: OutputFormat,
    value: &T,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::other)?;
            writeln!(out)
        }
        OutputFormat::Yaml => {
            let text = serde_yaml_ng::to_string(value).map_err(std::io::Error::other)?;
            out.write_all(text.as_bytes())
        }
        OutputFormat::Table => Err(std::io::Error::other(
            "a table is not a machine format; use emit",
        )),
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
/// An operator's answer to a yes/no question before a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// `--yes`, or "y"/"yes" typed.
    Yes,
    No,
    /// Not asked: stdin is no terminal and `--yes` was not given.
    NoTerminal,
}

/// Asks `question` (ending in `[y/N] `) on stderr and reads the answer
/// from a terminal; `yes` (the `--yes` flag) answers without asking.
pub fn confirm(yes: bool, question: &str) -> std::io::Result<Confirmation> {
    if yes {
        return Ok(Confirmation::Yes);
    }
    if !std::io::stdin().is_terminal() {
        return Ok(Confirmation::NoTerminal);
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(
        if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            Confirmation::Yes
        } else {
            Confirmation::No
        },
    )
}

pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// What goes to stderr: errors, warnings, progress notes and debug lines,
/// coloured only when stderr is a terminal and colour is allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Messages {
    pub color: bool,
    pub debug: bool,
}

impl Messages {
    /// Decides colour for stderr from the flag and the environment.
    pub fn for_stderr(no_color_flag: bool, debug: bool) -> Self {
        Messages {
            color: color_allowed(
                std::io::stderr().is_terminal(),
                no_color_flag,
                std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            ),
            debug,
        }
    }

    pub fn error(&self, message: &str) {
        eprintln!("{} {message}", self.prefix("error:", Mark::Bad));
    }

    pub fn warning(&self, message: &str) {
        eprintln!("{} {message}", self.prefix("warning:", Mark::Warn));
    }

    /// A line about progress (`upgrading platform ...`).
    pub fn note(&self, message: &str) {
        eprintln!("{message}");
    }

    pub fn debug(&self, message: &str) {
        if self.debug {
            eprintln!("debug: {message}");
        }
    }

    fn prefix(&self, word: &str, mark: Mark) -> String {
        Painter { color: self.color }.paint(word, mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_opt_out() {
        assert!(color_allowed(true, false, false));
        assert!(!color_allowed(false, false, false));
        assert!(!color_allowed(true, true, false));
        assert!(!color_allowed(true, false, true));
    }

    #[test]
    fn plain_painter_writes_no_escape_codes() {
        let p = Painter { color: false };
        let mut t = p.table(&["A", "B"]);
        t.add_row(vec![p.mark(Mark::Bad), p.marked("x", Mark::Warn)]);
        let text = format!("{t}\n{}{}", p.title("T"), p.paint("e", Mark::Bad));
        assert!(!text.contains('\x1b'), "{text:?}");
        let p = Painter { color: true };
        assert!(p.paint("e", Mark::Bad).contains('\x1b'));
    }

    #[test]
    fn machine_formats_round_trip() {
        #[derive(Serialize)]
        struct V {
            a: u8,
        }
        let mut out = Vec::new();
        write_machine(OutputFormat::Json, &V { a: 1 }, &mut out).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()["a"],
            1
        );
        let mut out = Vec::new();
        write_machine(OutputFormat::Yaml, &V { a: 2 }, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a: 2\n");
        assert!(write_machine(OutputFormat::Table, &V { a: 3 }, &mut Vec::new()).is_err());
    }
}
