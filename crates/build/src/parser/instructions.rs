//! Parsing of each instruction's arguments.

use super::words::{duration_nanos, json_array, split_raw, take_flags};
use super::{
    ArgDecl, CommandLine, CopyInstr, FromInstr, HealthcheckInstr, Heredoc, Instruction, MountSpec,
    ParseError, RunInstr, Sharing,
};

type Flags = Vec<(String, Option<String>)>;

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError::Syntax {
        line,
        message: message.into(),
    }
}

fn check_flags(
    flags: &Flags,
    allowed: &[&str],
    instr: &str,
    line: usize,
) -> Result<(), ParseError> {
    for (k, _) in flags {
        if !allowed.contains(&k.as_str()) {
            return Err(err(line, format!("unknown flag: --{k} for {instr}")));
        }
    }
    Ok(())
}

fn flag_value(flags: &Flags, name: &str, line: usize) -> Result<Option<String>, ParseError> {
    match flags.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, Some(v))) => Ok(Some(v.clone())),
        Some((_, None)) => Err(err(line, format!("flag --{name} needs a value"))),
    }
}

fn flag_bool(flags: &Flags, name: &str, line: usize) -> Result<bool, ParseError> {
    match flags.iter().rev().find(|(k, _)| k == name) {
        None => Ok(false),
        Some((_, None)) => Ok(true),
        Some((_, Some(v))) => match v.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(err(
                line,
                format!("invalid boolean value {v:?} for --{name}"),
            )),
        },
    }
}

fn command(rest: &str) -> CommandLine {
    match json_array(rest) {
        Some(v) => CommandLine::Exec(v),
        None => CommandLine::Shell(rest.trim().to_string()),
    }
}

/// Parses `name=value` pairs (or the legacy `name value...` form) for ENV and LABEL.
fn key_values(
    rest: &str,
    escape: char,
    instr: &str,
    line: usize,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_raw(rest, escape);
    let Some(first) = words.first() else {
        return Err(err(line, format!("{instr} requires at least one argument")));
    };
    if !first.contains('=') {
        // Legacy form: one key, the rest of the line is the value.
        let value = rest.trim_start()[first.len()..].trim();
        if value.is_empty() && instr == "ENV" {
            return Err(err(line, format!("{instr} must have two arguments")));
        }
        return Ok(vec![(first.clone(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(err(line, format!("{instr} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(err(
                line,
                format!("syntax error - can't find = in {w:?}. Must be of the form: name=value"),
            )),
        })
        .collect()
}

fn parse_mount(spec: &str, line: usize) -> Result<MountSpec, ParseError> {
    // `--mount="type=bind,source=a b,target=/x"`: the whole value may be quoted.
    let spec = match spec.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner,
        None => spec,
    };
    let mut kind = "bind".to_string();
    let (mut target, mut source, mut from, mut id) = (None, None, None, None);
    let (mut sharing, mut ro, mut rw) = (Sharing::Shared, false, false);
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (
                k.to_ascii_lowercase(),
                Some(v.trim_matches('"').to_string()),
            ),
            None => (field.to_ascii_lowercase(), None),
        };
        match (k.as_str(), v) {
            ("type", Some(v)) => kind = v,
            ("target" | "dst" | "destination", Some(v)) => target = Some(v),
            ("source" | "src", Some(v)) => source = Some(v),
            ("from", Some(v)) => from = Some(v),
            ("id", Some(v)) => id = Some(v),
            ("sharing", Some(v)) => {
                sharing = match v.as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(err(line, format!("unsupported sharing value {v:?}"))),
                }
            }
            ("ro" | "readonly", None) => ro = true,
            ("rw" | "readwrite", None) => rw = true,
            ("ro" | "readonly", Some(v)) => ro = v == "true",
            ("rw" | "readwrite", Some(v)) => rw = v == "true",
            ("mode" | "uid" | "gid" | "size", Some(_)) => {}
            (k, _) => return Err(err(line, format!("unexpected key '{k}' in --mount={spec}"))),
        }
    }
    let target = target.ok_or_else(|| err(line, format!("mount has no target: --mount={spec}")))?;
    match kind.as_str() {
        "cache" => Ok(MountSpec::Cache {
            id,
            target,
            sharing,
            readonly: ro,
        }),
        "bind" => Ok(MountSpec::Bind {
            source,
            target,
            from,
            readwrite: rw,
        }),
        "tmpfs" => Ok(MountSpec::Tmpfs { target }),
        other => Err(err(line, format!("unsupported mount type {other:?}"))),
    }
}

fn parse_from(
    flags: &Flags,
    rest: &str,
    escape: char,
    line: usize,
) -> Result<FromInstr, ParseError> {
    check_flags(flags, &["platform"], "FROM", line)?;
    let words = split_raw(rest, escape);
    let alias = match words.len() {
        1 => None,
        3 if words[1].eq_ignore_ascii_case("as") => Some(words[2].to_ascii_lowercase()),
        _ => return Err(err(line, "FROM requires either one or three arguments")),
    };
    if let Some(a) = &alias {
        let valid = a.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(err(line, format!("invalid name for build stage: {a:?}, name can't start with a number or contain symbols")));
        }
    }
    Ok(FromInstr {
        image: words[0].clone(),
        platform: flag_value(flags, "platform", line)?,
        alias,
    })
}

fn parse_copy(
    flags: &Flags,
    rest: &str,
    heredocs: &[Heredoc],
    escape: char,
    add: bool,
    line: usize,
) -> Result<CopyInstr, ParseError> {
    let name = if add { "ADD" } else { "COPY" };
    let allowed: &[&str] = if add {
        &[
            "chown",
            "chmod",
            "link",
            "from",
            "keep-git-dir",
            "checksum",
            "exclude",
            "parents",
        ]
    } else {
        &["chown", "chmod", "link", "from", "exclude", "parents"]
    };
    check_flags(flags, allowed, name, line)?;
    if add && flags.iter().any(|(k, _)| k == "from") {
        return Err(err(line, "ADD does not support --from"));
    }
    for unsupported in ["exclude", "parents", "keep-git-dir", "checksum"] {
        if flags.iter().any(|(k, _)| k == unsupported) {
            return Err(err(
                line,
                format!("{name} --{unsupported} is not supported by this builder"),
            ));
        }
    }
    let mut words = json_array(rest).unwrap_or_else(|| split_raw(rest, escape));
    if words.len() < 2 {
        return Err(err(
            line,
            format!(
                "{name} requires at least two arguments, but got {}",
                words.len()
            ),
        ));
    }
    let dest = words.pop().unwrap_or_default();
    Ok(CopyInstr {
        sources: words,
        dest,
        chown: flag_value(flags, "chown", line)?,
        chmod: flag_value(flags, "chmod", line)?,
        from: flag_value(flags, "from", line)?,
        link: flag_bool(flags, "link", line)?,
        heredocs: heredocs.to_vec(),
    })
}

/// A shell command that runs a `#!` heredoc as an executable script, like BuildKit: the
/// script is written to a temporary file that is removed again (so it leaves no trace in
/// the layer).
fn shebang_script(content: &str) -> String {
    let mut delim = String::from("BERTH_HEREDOC");
    while content.lines().any(|l| l == delim) {
        delim.push('_');
    }
    format!(
        "f=\"${{TMPDIR:-/tmp}}/.berth-heredoc-$$\"; cat > \"$f\" <<'{delim}'\n{content}{delim}\nchmod 700 \"$f\" && \"$f\"; rc=$?; rm -f \"$f\"; exit $rc"
    )
}

fn parse_run(
    flags: &Flags,
    rest: &str,
    heredocs: &[Heredoc],
    line: usize,
) -> Result<RunInstr, ParseError> {
    check_flags(flags, &["mount", "network", "security"], "RUN", line)?;
    let mut mounts = Vec::new();
    for (k, v) in flags {
        if k == "mount" {
            let v = v
                .as_deref()
                .ok_or_else(|| err(line, "--mount needs a value"))?;
            mounts.push(parse_mount(v, line)?);
        }
        if k == "security" && v.as_deref() != Some("sandbox") {
            return Err(err(line, "RUN --security=insecure is not supported"));
        }
    }
    let network = flag_value(flags, "network", line)?;
    if let Some(n) = &network {
        if !matches!(n.as_str(), "default" | "none" | "host") {
            return Err(err(line, format!("unsupported network mode {n:?}")));
        }
    }
    let mut command = command(rest);
    if rest.trim().is_empty() && heredocs.is_empty() {
        return Err(err(line, "RUN requires at least one argument"));
    }
    if let CommandLine::Shell(text) = &mut command {
        let only_heredoc = heredocs.len() == 1 && {
            let t = text.trim();
            t.starts_with("<<")
                && super::lexer::heredoc_markers(t).len() == 1
                && !t.contains(char::is_whitespace)
        };
        if only_heredoc && heredocs[0].content.starts_with("#!") {
            *text = shebang_script(&heredocs[0].content);
        } else if only_heredoc {
            *text = heredocs[0].content.clone();
        } else {
            for h in heredocs {
                text.push('\n');
                text.push_str(&h.content);
                text.push_str(&h.name);
            }
        }
    }
    Ok(RunInstr {
        command,
        mounts,
        network,
        heredocs: heredocs.to_vec(),
    })
}

fn parse_healthcheck(
    flags: &Flags,
    rest: &str,
    line: usize,
) -> Result<HealthcheckInstr, ParseError> {
    check_flags(
        flags,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        "HEALTHCHECK",
        line,
    )?;
    let rest = rest.trim();
    let (kind, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !args.trim().is_empty() || !flags.is_empty() {
                return Err(err(line, "HEALTHCHECK NONE takes no arguments"));
            }
            Ok(HealthcheckInstr::None)
        }
        "CMD" => {
            if args.trim().is_empty() {
                return Err(err(line, "missing command after HEALTHCHECK CMD"));
            }
            let dur = |name: &str| -> Result<Option<i64>, ParseError> {
                match flag_value(flags, name, line)? {
                    None => Ok(None),
                    Some(v) => match duration_nanos(&v) {
                        Some(n) if n == 0 || n >= 1_000_000 => Ok(Some(n)),
                        Some(_) => Err(err(line, format!("--{name} cannot be less than 1ms"))),
                        None => Err(err(line, format!("invalid duration {v:?} for --{name}"))),
                    },
                }
            };
            let retries = match flag_value(flags, "retries", line)? {
                None => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n >= 0 => Some(n),
                    _ => return Err(err(line, format!("invalid --retries value {v:?}"))),
                },
            };
            Ok(HealthcheckInstr::Cmd {
                test: command(args),
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                start_period: dur("start-period")?,
                start_interval: dur("start-interval")?,
                retries,
            })
        }
        _ => Err(err(
            line,
            format!("unknown type {kind:?} in HEALTHCHECK (try CMD)"),
        )),
    }
}

fn no_flags(flags: &Flags, name: &str, line: usize) -> Result<(), ParseError> {
    check_flags(flags, &[], name, line)
}

fn needs_arg<'a>(rest: &'a str, name: &str, line: usize) -> Result<&'a str, ParseError> {
    let t = rest.trim();
    if t.is_empty() {
        return Err(err(line, format!("{name} requires exactly one argument")));
    }
    Ok(t)
}

/// Parses one logical line into an instruction.
pub fn parse_instruction(
    text: &str,
    heredocs: &[Heredoc],
    line: usize,
    escape: char,
) -> Result<Instruction, ParseError> {
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let name = word.to_ascii_uppercase();
    let (flags, rest) = take_flags(rest, escape);
    let rest = rest.as_str();
    Ok(match name.as_str() {
        "FROM" => Instruction::From(parse_from(&flags, rest, escape, line)?),
        "RUN" => Instruction::Run(parse_run(&flags, rest, heredocs, line)?),
        "CMD" | "ENTRYPOINT" => {
            no_flags(&flags, &name, line)?;
            let c = command(rest);
            if name == "CMD" {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        "ENV" => {
            no_flags(&flags, &name, line)?;
            Instruction::Env(key_values(rest, escape, "ENV", line)?)
        }
        "LABEL" => {
            no_flags(&flags, &name, line)?;
            Instruction::Label(key_values(rest, escape, "LABEL", line)?)
        }
        "ARG" => {
            no_flags(&flags, &name, line)?;
            let words = split_raw(rest, escape);
            if words.is_empty() {
                return Err(err(line, "ARG requires at least one argument"));
            }
            Instruction::Arg(
                words
                    .into_iter()
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) => ArgDecl {
                            name: k.to_string(),
                            default: Some(v.to_string()),
                        },
                        None => ArgDecl {
                            name: w,
                            default: None,
                        },
                    })
                    .collect(),
            )
        }
        "EXPOSE" => {
            no_flags(&flags, &name, line)?;
            let words = split_raw(rest, escape);
            if words.is_empty() {
                return Err(err(line, "EXPOSE requires at least one argument"));
            }
            Instruction::Expose(words)
        }
        "USER" => {
            no_flags(&flags, &name, line)?;
            Instruction::User(needs_arg(rest, &name, line)?.to_string())
        }
        "WORKDIR" => {
            no_flags(&flags, &name, line)?;
            Instruction::Workdir(needs_arg(rest, &name, line)?.to_string())
        }
        "STOPSIGNAL" => {
            no_flags(&flags, &name, line)?;
            Instruction::StopSignal(needs_arg(rest, &name, line)?.to_string())
        }
        "MAINTAINER" => {
            no_flags(&flags, &name, line)?;
            Instruction::Maintainer(needs_arg(rest, &name, line)?.to_string())
        }
        "VOLUME" => {
            no_flags(&flags, &name, line)?;
            let v = json_array(rest).unwrap_or_else(|| split_raw(rest, escape));
            if v.is_empty() || v.iter().any(|p| p.trim().is_empty()) {
                return Err(err(line, "VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(v)
        }
        "SHELL" => {
            no_flags(&flags, &name, line)?;
            match json_array(rest) {
                Some(v) if !v.is_empty() => Instruction::Shell(v),
                _ => return Err(err(line, "SHELL requires the arguments to be in JSON form")),
            }
        }
        "HEALTHCHECK" => Instruction::Healthcheck(parse_healthcheck(&flags, rest, line)?),
        "COPY" => Instruction::Copy(parse_copy(&flags, rest, heredocs, escape, false, line)?),
        "ADD" => Instruction::Add(parse_copy(&flags, rest, heredocs, escape, true, line)?),
        "ONBUILD" => {
            no_flags(&flags, &name, line)?;
            let trigger = needs_arg(rest, &name, line)?;
            let inner = trigger
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(err(
                    line,
                    format!("{inner} isn't allowed as an ONBUILD trigger"),
                ));
            }
            let parsed = parse_instruction(trigger, heredocs, line, escape)?;
            Instruction::OnBuild(trigger.to_string(), Box::new(parsed))
        }
        _ => {
            return Err(ParseError::UnknownInstruction {
                line,
                name: word.to_string(),
            })
        }
    })
}
