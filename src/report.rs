//! How results reach people and scripts: tables (coloured only on a
//! terminal, never with `NO_COLOR`/`--no-color`), JSON and YAML with stable
//! shapes, and one place that prints errors.

use std::io::{IsTerminal, Write};

use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};
use owo_colors::OwoColorize;
use serde::Serialize;

use crate::cli::OutputFormat;

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

    fn symbol(self) -> &'static str {
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

/// Builds table cells, coloured or not.
#[derive(Debug, Clone, Copy)]
pub struct Painter {
    pub color: bool,
}

impl Painter {
    pub fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        // Borderless columns, like kubectl get.
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

    /// A cell with text coloured like `mark`.
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

    pub fn title(&self, text: &str) -> String {
        if self.color {
            text.bold().to_string()
        } else {
            text.to_string()
        }
    }
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
        OutputFormat::Table => unreachable!("tables are rendered by each command"),
    }
}

/// Prints an error for the operator on stderr (red `error:` on a terminal).
pub fn print_error(message: &str) {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let prefix = if color {
        "error:".red().bold().to_string()
    } else {
        "error:".to_string()
    };
    eprintln!("{prefix} {message}");
}

/// Prints a debug line (only with --debug / HELM_DEBUG).
pub fn print_debug(enabled: bool, message: &str) {
    if enabled {
        eprintln!("debug: {message}");
    }
}
