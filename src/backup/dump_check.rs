//! What a `pg_dumpall` dump must look like before psql may run it.
//!
//! psql runs more than SQL: outside quotes, a backslash starts a
//! meta-command (`\! cmd` runs a shell command, `\o |cmd` pipes to one,
//! `\copy ... program`, `\i file`, ...), and the server runs `COPY ...
//! PROGRAM` and `COPY ... TO/FROM '<file>'` as the operating-system user it
//! runs as. A bundle is data from a cluster: it may have been altered. So
//! [`GuardedDump`] reads the dump line by line as psql's own lexer does
//! (quotes, dollar quotes, comments, `E''` strings, `BEGIN ATOMIC` bodies,
//! `COPY ... FROM stdin` data up to `\.`) and refuses, naming the line:
//!
//! - any meta-command other than the ones pg_dumpall writes (`\connect`,
//!   `\restrict`, `\unrestrict`), or one that does not start a line between
//!   statements, or whose arguments hold anything but plain names;
//! - `COPY ... PROGRAM`, `COPY ... TO/FROM '<file>'` and any COPY form other
//!   than `FROM stdin` / `TO stdout`;
//! - a change of `standard_conforming_strings` (it changes where strings
//!   end) other than the `SET standard_conforming_strings = on|off;`
//!   statement pg_dump writes;
//! - an SQL line longer than [`MAX_SQL_LINE`].
//!
//! For the restore test it also puts psql in restricted mode with a key the
//! dump cannot know: `\restrict`/`\unrestrict` lines of the dump become
//! empty lines and each `\connect` becomes `\unrestrict KEY \connect ...
//! \restrict KEY` on its one line, so psql refuses any meta-command this
//! lexer might have missed, and line numbers stay those of the dump.

use std::io::{self, BufRead, BufReader, Read};

/// Longest SQL line (outside COPY data) accepted; pg_dump writes large
/// values as COPY data, and large objects in chunks of a few KiB.
pub const MAX_SQL_LINE: usize = 16 << 20;

/// Chunk of COPY data passed on at once.
const DATA_CHUNK: u64 = 256 * 1024;

/// Why a dump was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct DumpRefusal {
    /// 1-based line of the dump.
    pub line: u64,
    pub reason: String,
}

impl DumpRefusal {
    /// The refusal inside an `io::Error` from [`GuardedDump`], if it is one.
    pub fn from_io(e: &io::Error) -> Option<&DumpRefusal> {
        e.get_ref().and_then(|i| i.downcast_ref::<DumpRefusal>())
    }
}

/// What to write instead of a line, and what comes after it.
#[derive(Debug, Default, PartialEq, Eq)]
struct LineOutcome {
    replacement: Option<Vec<u8>>,
    /// The line ended a `COPY ... FROM stdin`: data follows.
    copy_data_follows: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Quote {
    None,
    /// `'...'`; `escapes` for `E'...'` (or any string when
    /// standard_conforming_strings is off).
    Single {
        escapes: bool,
    },
    Double,
    /// `$tag$ ... $tag$` (the whole delimiter).
    Dollar(Vec<u8>),
    /// `/* ... */`, nested this deep.
    Block(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word, upper-cased.
    Word(String),
    /// A string literal (any quoting).
    Str,
    Open,
    Close,
    Other,
}

/// psql's view of the SQL around the COPY data, line by line.
#[derive(Debug)]
struct Lexer {
    quote: Quote,
    std_strings: bool,
    paren: u32,
    /// psql's `BEGIN ... END` depth inside `CREATE FUNCTION|PROCEDURE`
    /// (SQL-standard bodies), where `;` does not end the statement.
    begin_depth: u32,
    ident_count: usize,
    idents: [u8; 4],
    /// SQL text since the last statement ended.
    pending: bool,
    /// Tokens of the current statement when it starts with COPY.
    copy: Option<Vec<Token>>,
    copy_data_follows: bool,
    restrict_key: Option<String>,
}

/// Tokens kept for one COPY statement at most (long column lists).
const MAX_COPY_TOKENS: usize = 200_000;

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn ident_cont(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// The length of a dollar-quote delimiter (`$$`, `$tag$`) at the start of
/// `s`, if there is one.
fn dollar_delimiter(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'$'));
    let mut i = 1;
    if let Some(&c) = s.get(1)
        && ident_start(c)
    {
        i += 1;
        while let Some(&c) = s.get(i) {
            if ident_start(c) || c.is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
    }
    (s.get(i) == Some(&b'$')).then_some(i + 1)
}

impl Lexer {
    fn new(restrict_key: Option<String>) -> Self {
        Lexer {
            quote: Quote::None,
            std_strings: true,
            paren: 0,
            begin_depth: 0,
            ident_count: 0,
            idents: [0; 4],
            pending: false,
            copy: None,
            copy_data_follows: false,
            restrict_key,
        }
    }

    /// Checks one SQL line (with its newline, if any).
    fn line(&mut self, line: &[u8]) -> Result<LineOutcome, String> {
        if self.quote == Quote::None && line.first() == Some(&b'\\') {
            return self.meta(line);
        }
        self.conforming_strings(line)?;
        let n = line.len();
        let mut i = 0;
        while i < n {
            let c = line[i];
            let next = line.get(i + 1).copied();
            match &mut self.quote {
                Quote::Single { escapes } => {
                    if *escapes && c == b'\\' {
                        i += 2;
                    } else if c == b'\'' {
                        if next == Some(b'\'') {
                            i += 2;
                        } else {
                            self.quote = Quote::None;
                            i += 1;
                        }
                    } else {
                        i += 1;
                    }
                }
                Quote::Double => {
                    if c == b'"' {
                        if next == Some(b'"') {
                            i += 2;
                        } else {
                            self.quote = Quote::None;
                            i += 1;
                        }
                    } else {
                        i += 1;
                    }
                }
                Quote::Dollar(delim) => {
                    if c == b'$' && line[i..].starts_with(delim) {
                        i += delim.len();
                        self.quote = Quote::None;
                    } else {
                        i += 1;
                    }
                }
                Quote::Block(depth) => {
                    if c == b'/' && next == Some(b'*') {
                        *depth += 1;
                        i += 2;
                    } else if c == b'*' && next == Some(b'/') {
                        *depth -= 1;
                        i += 2;
                        if *depth == 0 {
                            self.quote = Quote::None;
                        }
                    } else {
                        i += 1;
                    }
                }
                Quote::None => match c {
                    b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
                    b'-' if next == Some(b'-') => break,
                    b'/' if next == Some(b'*') => {
                        self.quote = Quote::Block(1);
                        i += 2;
                    }
                    b'\'' => {
                        self.token(Token::Str)?;
                        self.quote = Quote::Single {
                            escapes: !self.std_strings,
                        };
                        i += 1;
                    }
                    b'"' => {
                        self.token(Token::Other)?;
                        self.quote = Quote::Double;
                        i += 1;
                    }
                    b'$' => match dollar_delimiter(&line[i..]) {
                        Some(len) => {
                            self.token(Token::Str)?;
                            self.quote = Quote::Dollar(line[i..i + len].to_vec());
                            i += len;
                        }
                        None => {
                            self.token(Token::Other)?;
                            i += 1;
                        }
                    },
                    b'\\' => {
                        return Err(
                            "a backslash outside quotes in the middle of a line: psql would run it as a meta-command, and pg_dumpall writes none there"
                                .to_owned(),
                        );
                    }
                    b'(' => {
                        self.token(Token::Open)?;
                        self.paren += 1;
                        i += 1;
                    }
                    b')' => {
                        self.token(Token::Close)?;
                        self.paren = self.paren.saturating_sub(1);
                        i += 1;
                    }
                    b';' => {
                        i += 1;
                        if self.paren == 0 && self.begin_depth == 0 {
                            self.end_statement()?;
                        } else {
                            self.token(Token::Other)?;
                        }
                    }
                    c if c.is_ascii_digit() => {
                        while i < n && (line[i].is_ascii_alphanumeric() || line[i] == b'_') {
                            i += 1;
                        }
                        self.token(Token::Other)?;
                    }
                    c if ident_start(c) => {
                        let start = i;
                        while i < n && ident_cont(line[i]) {
                            i += 1;
                        }
                        let word = &line[start..i];
                        let quote_follows = line.get(i) == Some(&b'\'');
                        if quote_follows && word.eq_ignore_ascii_case(b"e") {
                            // E'...': backslash escapes, whatever the setting.
                            self.token(Token::Str)?;
                            self.quote = Quote::Single { escapes: true };
                            i += 1;
                        } else if quote_follows
                            && [b"b", b"x", b"n"]
                                .iter()
                                .any(|p| word.eq_ignore_ascii_case(*p))
                        {
                            // B'..', X'..', N'..': plain quoting rules.
                            self.token(Token::Str)?;
                            self.quote = Quote::Single {
                                escapes: !self.std_strings,
                            };
                            i += 1;
                        } else {
                            self.word(word)?;
                        }
                    }
                    _ => {
                        self.token(Token::Other)?;
                        i += 1;
                    }
                },
            }
        }
        Ok(LineOutcome {
            replacement: None,
            copy_data_follows: std::mem::take(&mut self.copy_data_follows),
        })
    }

    /// An unquoted word: a token, and psql's tracking of `BEGIN ... END`
    /// in `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (psqlscan.l).
    fn word(&mut self, word: &[u8]) -> Result<(), String> {
        let lower = word.to_ascii_lowercase();
        if self.ident_count == 0 {
            self.idents = [0; 4];
        }
        if matches!(
            lower.as_slice(),
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && self.ident_count < self.idents.len()
        {
            self.idents[self.ident_count] = lower[0];
        }
        self.ident_count += 1;
        let id = self.idents;
        let in_routine = id[0] == b'c'
            && (id[1] == b'f'
                || id[1] == b'p'
                || (id[1] == b'o' && id[2] == b'r' && (id[3] == b'f' || id[3] == b'p')));
        if in_routine && self.paren == 0 {
            match lower.as_slice() {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        self.token(Token::Word(
            String::from_utf8_lossy(&word.to_ascii_uppercase()).into_owned(),
        ))
    }

    fn token(&mut self, t: Token) -> Result<(), String> {
        if !self.pending {
            self.pending = true;
            self.copy = (t == Token::Word("COPY".to_owned())).then(Vec::new);
        }
        if let Some(tokens) = &mut self.copy {
            if tokens.len() >= MAX_COPY_TOKENS {
                return Err("a COPY statement far longer than pg_dumpall writes".to_owned());
            }
            tokens.push(t);
        }
        Ok(())
    }

    /// A `;` ended a statement (as psql sees it).
    fn end_statement(&mut self) -> Result<(), String> {
        if let Some(tokens) = self.copy.take() {
            self.copy_data_follows = copy_reads_stdin(&tokens)?;
        }
        self.pending = false;
        self.ident_count = 0;
        self.begin_depth = 0;
        self.paren = 0;
        Ok(())
    }

    /// Lines naming standard_conforming_strings: only pg_dump's own SET,
    /// which this lexer follows (it decides whether `\` escapes in '...').
    fn conforming_strings(&mut self, line: &[u8]) -> Result<(), String> {
        const NAME: &[u8] = b"standard_conforming_strings";
        if !line
            .windows(NAME.len())
            .any(|w| w.eq_ignore_ascii_case(NAME))
        {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line).to_ascii_lowercase();
        let words: Vec<&str> = text
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .collect();
        let whole_line = self.quote == Quote::None && !self.pending && text.trim().ends_with(';');
        match (whole_line, words.as_slice()) {
            (true, ["set", "standard_conforming_strings", "=" | "to", value]) => {
                match *value {
                    "on" => self.std_strings = true,
                    "off" => self.std_strings = false,
                    _ => return Err(conforming_strings_refusal()),
                }
                Ok(())
            }
            _ => Err(conforming_strings_refusal()),
        }
    }

    /// A line starting with a backslash: a psql meta-command.
    fn meta(&mut self, line: &[u8]) -> Result<LineOutcome, String> {
        if self.pending {
            return Err(
                "a psql meta-command in the middle of an SQL statement; pg_dumpall writes them only between statements"
                    .to_owned(),
            );
        }
        let text = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        let body = &text[1..];
        let name_len = body
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .unwrap_or(body.len());
        let name_len = if name_len == 0 {
            body.len().min(1)
        } else {
            name_len
        };
        let name = String::from_utf8_lossy(&body[..name_len]).into_owned();
        let args = &body[name_len..];
        match name.as_str() {
            "connect" => {
                let args = std::str::from_utf8(args)
                    .map_err(|_| "\\connect with arguments that are not UTF-8".to_owned())?;
                check_connect_args(args)?;
                // A new session starts with the server's default.
                self.std_strings = true;
                let replacement = self.restrict_key.as_ref().map(|k| {
                    format!("\\unrestrict {k} \\connect{args} \\restrict {k}\n").into_bytes()
                });
                Ok(LineOutcome {
                    replacement,
                    copy_data_follows: false,
                })
            }
            "restrict" | "unrestrict" => {
                check_key_arg(&name, args)?;
                // The dump's own key is known to whoever wrote the dump;
                // psql stays restricted with a key of ours instead.
                Ok(LineOutcome {
                    replacement: Some(b"\n".to_vec()),
                    copy_data_follows: false,
                })
            }
            _ => Err(format!(
                "psql meta-command \\{name} is not one pg_dumpall writes (only \\connect, \\restrict and \\unrestrict are accepted); psql would run it"
            )),
        }
    }
}

fn conforming_strings_refusal() -> String {
    "changes standard_conforming_strings other than by pg_dump's 'SET standard_conforming_strings = on|off;' line: that changes where strings end, so this check could no longer tell psql's meta-commands from data".to_owned()
}

/// Whether a COPY statement reads data from psql (`FROM stdin`); refuses
/// every form that reaches a program or a file.
fn copy_reads_stdin(tokens: &[Token]) -> Result<bool, String> {
    let mut depth = 0u32;
    let mut direction = None;
    let mut target = None;
    for t in tokens.iter().skip(1) {
        match t {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if direction.is_none() => {
                if let Token::Word(w) = t
                    && (w == "FROM" || w == "TO")
                {
                    direction = Some(w.clone());
                }
            }
            _ => {
                target = Some(t.clone());
                break;
            }
        }
    }
    let direction = direction.unwrap_or_default();
    match (direction.as_str(), target) {
        (_, Some(Token::Word(w))) if w == "PROGRAM" => Err(format!(
            "COPY ... {direction} PROGRAM runs a shell command on the machine that restores the dump; pg_dumpall never writes it"
        )),
        (_, Some(Token::Str)) => Err(format!(
            "COPY ... {direction} '<file>' reads or writes a file on the machine that restores the dump; pg_dumpall writes only COPY ... FROM stdin"
        )),
        ("FROM", Some(Token::Word(w))) if w == "STDIN" => Ok(true),
        ("TO", Some(Token::Word(w))) if w == "STDOUT" => Ok(false),
        _ => Err(
            "a COPY statement of a form pg_dumpall does not write (it writes only COPY ... FROM stdin)"
                .to_owned(),
        ),
    }
}

/// `\connect` arguments as pg_dumpall writes them: a plain database name,
/// or `-reuse-previous=on "dbname='...'"`. Nothing psql would expand
/// (backquotes run commands, `:name` inserts variables) and no backslash.
fn check_connect_args(args: &str) -> Result<(), String> {
    let bad = |why: &str| format!("\\connect with arguments pg_dumpall does not write ({why})");
    if !args.is_empty() && !args.starts_with([' ', '\t']) {
        return Err(bad("no space after the command"));
    }
    if let Some(c) = args.chars().find(|c| matches!(c, '`' | '\\' | ':')) {
        return Err(bad(&format!("'{c}' in the arguments")));
    }
    let mut words = Vec::new();
    let mut rest = args.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut end = None;
            let bytes = quoted.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'"' {
                    if bytes.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let end = end.ok_or_else(|| bad("an unterminated quote"))?;
            words.push(&rest[..end + 2]);
            rest = &quoted[end + 1..];
            if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                return Err(bad("text right after a quote"));
            }
        } else {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            let word = &rest[..end];
            if !word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '.'))
            {
                return Err(bad(&format!("'{word}' is not a plain name")));
            }
            words.push(word);
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    match words.as_slice() {
        [db] if !db.starts_with('-') => Ok(()),
        [flag, db] if flag.starts_with("-reuse-previous=") && !db.starts_with('-') => Ok(()),
        [] => Err(bad("no database")),
        _ => Err(bad("more than a database name")),
    }
}

/// `\restrict KEY` / `\unrestrict KEY`: one alphanumeric key.
fn check_key_arg(name: &str, args: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(args).unwrap_or("\u{fffd}");
    let words: Vec<&str> = text.split_whitespace().collect();
    let spaced = args.first().is_some_and(|c| *c == b' ' || *c == b'\t');
    match words.as_slice() {
        [key] if spaced && key.len() <= 256 && key.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(())
        }
        _ => Err(format!(
            "\\{name} with an argument pg_dumpall does not write (one alphanumeric key)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sql,
    /// COPY data; `at_line_start` when the next byte starts a line.
    Data {
        at_line_start: bool,
    },
}

/// A dump on its way to psql: the same bytes (but for the `\restrict` /
/// `\connect` lines, see the module documentation), or an error holding a
/// [`DumpRefusal`] before psql sees a refused line.
pub struct GuardedDump<R: Read> {
    inner: BufReader<R>,
    lexer: Lexer,
    mode: Mode,
    /// The line being read (1-based).
    line: u64,
    out: Vec<u8>,
    pos: usize,
    eof: bool,
    refused: Option<DumpRefusal>,
}

impl<R: Read> GuardedDump<R> {
    /// Checks `inner` as it is read. With `restrict_key`, the output keeps
    /// psql in restricted mode with that key (start psql with `\restrict
    /// KEY` first); without, `\restrict` lines are dropped.
    pub fn new(inner: R, restrict_key: Option<String>) -> Self {
        GuardedDump {
            inner: BufReader::with_capacity(256 * 1024, inner),
            lexer: Lexer::new(restrict_key),
            mode: Mode::Sql,
            line: 0,
            out: Vec::new(),
            pos: 0,
            eof: false,
            refused: None,
        }
    }

    /// The refusal, once one happened.
    pub fn refusal(&self) -> Option<&DumpRefusal> {
        self.refused.as_ref()
    }

    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    fn refuse(&mut self, reason: String) -> io::Error {
        let r = DumpRefusal {
            line: self.line,
            reason,
        };
        self.refused = Some(r.clone());
        io::Error::new(io::ErrorKind::InvalidData, r)
    }

    /// Puts the next piece of output in `self.out`.
    fn fill(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.out);
        buf.clear();
        self.pos = 0;
        match self.mode {
            Mode::Sql => {
                let n = (&mut self.inner)
                    .take(MAX_SQL_LINE as u64 + 1)
                    .read_until(b'\n', &mut buf)?;
                if n == 0 {
                    self.eof = true;
                    return Ok(());
                }
                self.line += 1;
                if buf.len() > MAX_SQL_LINE {
                    return Err(self.refuse(format!(
                        "an SQL line longer than {} MiB outside COPY data; pg_dumpall writes no such line",
                        MAX_SQL_LINE >> 20
                    )));
                }
                match self.lexer.line(&buf) {
                    Ok(outcome) => {
                        if outcome.copy_data_follows {
                            self.mode = Mode::Data {
                                at_line_start: true,
                            };
                        }
                        self.out = outcome.replacement.unwrap_or(buf);
                    }
                    Err(reason) => return Err(self.refuse(reason)),
                }
            }
            Mode::Data { at_line_start } => {
                let n = (&mut self.inner)
                    .take(DATA_CHUNK)
                    .read_until(b'\n', &mut buf)?;
                if n == 0 {
                    self.eof = true;
                    return Ok(());
                }
                if at_line_start {
                    self.line += 1;
                }
                let ends_line = buf.ends_with(b"\n");
                self.mode = if at_line_start && (buf == b"\\.\n" || buf == b"\\.\r\n") {
                    // psql's end of COPY data.
                    Mode::Sql
                } else {
                    Mode::Data {
                        at_line_start: ends_line,
                    }
                };
                self.out = buf;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for GuardedDump<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some(r) = &self.refused {
                return Err(io::Error::new(io::ErrorKind::InvalidData, r.clone()));
            }
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dump: &str, key: Option<&str>) -> Result<String, DumpRefusal> {
        let mut g = GuardedDump::new(dump.as_bytes(), key.map(str::to_owned));
        let mut out = Vec::new();
        match g.read_to_end(&mut out) {
            Ok(_) => Ok(String::from_utf8(out).unwrap()),
            Err(e) => Err(DumpRefusal::from_io(&e).cloned().expect("a refusal")),
        }
    }

    fn refused_at(dump: &str) -> (u64, String) {
        let r = run(dump, None).expect_err("refused");
        (r.line, r.reason)
    }

    const DUMP: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abcDEF123\n\nSET standard_conforming_strings = on;\nCREATE ROLE yubiuser;\n\\unrestrict abcDEF123\n\\connect template1\n\\connect -reuse-previous=on \"dbname='my db'\"\nCOPY public.t (a, b) FROM stdin;\n1\tx\\\\y\\tz\n2\t\\N\n\\.\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $_$ SELECT 'a\\b' $_$;\nSELECT E'it\\'s \\\\', 'C:\\';\n-- a comment with \\! in it\n/* and \\o |x here */\n";

    #[test]
    fn a_pg_dumpall_dump_passes_and_gets_our_restrict_key() {
        let plain = run(DUMP, None).unwrap();
        assert_eq!(plain.lines().count(), DUMP.lines().count());
        assert!(!plain.contains("restrict"), "{plain}");
        assert!(plain.contains("\n\\connect template1\n"));
        let keyed = run(DUMP, Some("KEY")).unwrap();
        assert_eq!(keyed.lines().count(), DUMP.lines().count());
        assert!(keyed.contains("\n\\unrestrict KEY \\connect template1 \\restrict KEY\n"));
        assert!(!keyed.contains("abcDEF123"));
        // COPY data passes untouched.
        assert!(keyed.contains("1\tx\\\\y\\tz\n2\t\\N\n\\.\n"));
    }

    #[test]
    fn meta_commands_other_than_pg_dumpalls_are_refused_with_their_line() {
        let (line, why) = refused_at("SELECT 1;\n\\! touch /tmp/x\n");
        assert_eq!(line, 2);
        assert!(why.contains("\\!"), "{why}");
        assert_eq!(refused_at("SELECT 1; \\! id\n").0, 1);
        assert_eq!(refused_at("SELECT 1\n\\connect x\n;\n").0, 2);
        assert_eq!(refused_at("\\o |sh\n").0, 1);
        assert_eq!(refused_at("\\copy t from program 'x'\n").0, 1);
        assert_eq!(refused_at("\\connect `touch x`\n").0, 1);
        assert_eq!(refused_at("\\connect :db\n").0, 1);
        assert_eq!(refused_at("\\connect db \\! id\n").0, 1);
        assert_eq!(refused_at("\\restrict `id`\n").0, 1);
        // After a string that ends where psql ends it.
        assert_eq!(refused_at("SELECT 'a''b' \\! id\n").0, 1);
        assert_eq!(refused_at("SELECT E'a\\'b' \\! id\n").0, 1);
        assert_eq!(refused_at("SELECT $x$ $ $x$ \\! id\n").0, 1);
        assert_eq!(refused_at("/* a /* b */ c */ \\! id\n").0, 1);
    }

    #[test]
    fn copy_data_ends_at_the_end_marker_only() {
        let (line, _) =
            refused_at("COPY t (a) FROM stdin;\n\\! not run: data\n\\.\n\\! run by psql\n");
        assert_eq!(line, 4);
        // A failed COPY is stopped by ON_ERROR_STOP; its data is never SQL.
        run("COPY t FROM stdin;\n\\x\n\\.\n", None).unwrap();
        // Text after the COPY's semicolon is SQL, run after the data.
        assert_eq!(refused_at("COPY t FROM stdin; \\! id\n1\n\\.\n").0, 1);
    }

    #[test]
    fn copy_to_programs_and_files_is_refused() {
        let (line, why) = refused_at("SET x = 1;\nCOPY t TO PROGRAM 'touch /tmp/x';\n");
        assert_eq!(line, 2);
        assert!(why.contains("PROGRAM"), "{why}");
        assert!(
            refused_at("copy t from program 'id';\n")
                .1
                .contains("PROGRAM")
        );
        assert!(
            refused_at("COPY t FROM '/etc/passwd';\n")
                .1
                .contains("file")
        );
        assert!(
            refused_at("COPY (SELECT 1 FROM x) TO '/tmp/o';\n")
                .1
                .contains("file")
        );
        assert!(refused_at("COPY t (\"from\", b) FROM\n PROGRAM\n 'id';\n").0 == 3);
        run("COPY (SELECT a FROM t) TO STDOUT;\n", None).unwrap();
    }

    #[test]
    fn semicolons_inside_atomic_bodies_do_not_end_the_statement() {
        // Not a COPY: psql sends the whole CREATE FUNCTION at the last `;`.
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n SELECT 1;\n COPY t FROM stdin;\nEND;\n\\! id\n";
        assert_eq!(refused_at(sql).0, 6);
    }

    #[test]
    fn conforming_strings_are_followed_or_refused() {
        // With the setting off, '\'' does not end the string: psql sees no
        // meta-command on this line.
        run(
            "SET standard_conforming_strings = off;\nSELECT 'a\\' \\! b';\n",
            None,
        )
        .unwrap();
        assert_eq!(
            refused_at("SET standard_conforming_strings = on;\nSELECT 'a\\' \\! b';\n").0,
            2
        );
        assert_eq!(
            refused_at("SELECT set_config('standard_conforming_strings', 'off', false);\n").0,
            1
        );
        assert_eq!(
            refused_at("ALTER DATABASE d SET standard_conforming_strings = off;\n").0,
            1
        );
    }

    #[test]
    fn long_lines_and_long_copy_data() {
        let mut dump = String::from("COPY t FROM stdin;\n");
        dump.push_str(&"x".repeat(1 << 20));
        dump.push_str("\n\\.\n\\! id\n");
        assert_eq!(refused_at(&dump).0, 4);
    }
}
