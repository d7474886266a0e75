//! `portcullis passwd`: turn a password into the SCRAM verifier stored in
//! the configuration, so the file never holds a password.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use portcullis_config::ScramVerifier;

pub fn run(stdin: bool) -> ExitCode {
    let password = if stdin || !std::io::stdin().is_terminal() {
        read_stdin()
    } else {
        prompt()
    };
    let password = match password {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if password.is_empty() {
        eprintln!("error: the password is empty");
        return ExitCode::from(1);
    }
    println!("{}", ScramVerifier::generate(password.as_bytes()));
    ExitCode::SUCCESS
}

fn read_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn prompt() -> Result<String, String> {
    let first = read_hidden("Password: ")?;
    let second = read_hidden("Repeat password: ")?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// Reads a line from the terminal with echo off.
pub(crate) fn read_hidden(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let have_term = unsafe { libc::tcgetattr(fd, &mut term) } == 0;
    if have_term {
        let mut quiet = term;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let line = read_stdin();
    if have_term {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    }
    eprintln!();
    line
}
