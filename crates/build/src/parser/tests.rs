use super::expand::{expand_word, expand_words, ExpandError};
use super::*;
use std::collections::HashMap;

fn one(src: &str) -> Instruction {
    let df = parse(&format!("FROM scratch\n{src}\n")).unwrap();
    df.stages[0].instructions[0].instruction.clone()
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

#[test]
fn from_forms() {
    let df = parse("ARG V=1\nFROM --platform=linux/amd64 busybox:${V} AS Build\nFROM scratch\nFROM build as x\n").unwrap();
    assert_eq!(
        df.global_args,
        vec![ArgDecl {
            name: "V".into(),
            default: Some("1".into())
        }]
    );
    assert_eq!(df.stages.len(), 3);
    assert_eq!(
        df.stages[0].from,
        FromInstr {
            image: "busybox:${V}".into(),
            platform: Some("linux/amd64".into()),
            alias: Some("build".into())
        }
    );
    assert_eq!(df.stages[1].from.image, "scratch");
    assert_eq!(df.stages[2].from.alias.as_deref(), Some("x"));
    assert_eq!(df.stage_by_name("BUILD").unwrap().index, 0);
    assert_eq!(df.stage_by_name("1").unwrap().index, 1);
    assert!(matches!(
        parse("FROM a b\n"),
        Err(ParseError::Syntax { line: 1, .. })
    ));
    assert!(matches!(
        parse("FROM a AS 1x\n"),
        Err(ParseError::Syntax { line: 1, .. })
    ));
}

#[test]
fn first_instruction_must_be_from() {
    let e = parse("# comment\n\nRUN true\n").unwrap_err();
    assert_eq!(
        e,
        ParseError::Syntax {
            line: 3,
            message:
                "no build stage in current context: the first instruction must be FROM (or ARG)"
                    .into()
        }
    );
    assert!(parse("").is_err());
}

#[test]
fn unknown_instruction_has_line() {
    let e = parse("FROM a\nRUN x\n\nFOO bar\n").unwrap_err();
    assert_eq!(
        e,
        ParseError::UnknownInstruction {
            line: 4,
            name: "FOO".into()
        }
    );
    assert!(e.to_string().contains("line 4"));
}

#[test]
fn run_forms_and_flags() {
    assert_eq!(
        one("RUN echo hi"),
        Instruction::Run(RunInstr {
            command: CommandLine::Shell("echo hi".into()),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        })
    );
    assert_eq!(
        one(r#"RUN ["echo", "a b"]"#),
        Instruction::Run(RunInstr {
            command: CommandLine::Exec(vec!["echo".into(), "a b".into()]),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        })
    );
    // Malformed JSON falls back to shell form, like Docker.
    assert_eq!(
        one("CMD [\"a\", b]"),
        Instruction::Cmd(CommandLine::Shell("[\"a\", b]".into()))
    );
    let Instruction::Run(r) = one("RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=bind,source=src,target=/src,from=build --network=none make") else { panic!() };
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(
        r.mounts[0],
        MountSpec::Cache {
            id: Some("pip".into()),
            target: "/root/.cache".into(),
            sharing: Sharing::Locked,
            readonly: false
        }
    );
    assert_eq!(
        r.mounts[1],
        MountSpec::Bind {
            source: Some("src".into()),
            target: "/src".into(),
            from: Some("build".into()),
            readwrite: false
        }
    );
    assert_eq!(r.command, CommandLine::Shell("make".into()));
    let Instruction::Run(r) = one("RUN --mount=\"type=bind,source=a b,target=/x\" true") else {
        panic!()
    };
    assert_eq!(
        r.mounts[0],
        MountSpec::Bind {
            source: Some("a b".into()),
            target: "/x".into(),
            from: None,
            readwrite: false
        }
    );
    assert!(parse("FROM a\nRUN --mount=type=secret,target=/x true\n").is_err());
    assert!(parse("FROM a\nRUN --mount=type=cache true\n").is_err());
    assert!(matches!(
        parse("FROM a\nRUN --bogus true\n"),
        Err(ParseError::Syntax { line: 2, .. })
    ));
    assert!(parse("FROM a\nRUN --network=bridge0 true\n").is_err());
}

#[test]
fn continuations_and_comments() {
    let df = parse("FROM a\nRUN echo a \\\n  # inner comment\n\n  b \\  \n  c\nCMD x\n").unwrap();
    let l = &df.stages[0].instructions[0];
    assert_eq!(l.line, 2);
    assert_eq!(
        l.instruction,
        Instruction::Run(RunInstr {
            command: CommandLine::Shell("echo a   b   c".into()),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        })
    );
    assert_eq!(df.stages[0].instructions[1].line, 7);
}

#[test]
fn escape_directive() {
    let df =
        parse("# escape=`\n# syntax=docker/dockerfile:1\nFROM a\nRUN dir c:\\ `\n  x\n").unwrap();
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Run(RunInstr {
            command: CommandLine::Shell("dir c:\\   x".into()),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        })
    );
    // After the first non-directive line, `# escape=` is a comment.
    let df = parse("FROM a\n# escape=`\nRUN a \\\n b\n").unwrap();
    assert_eq!(df.directives.escape, '\\');
    assert!(parse("# escape=x\nFROM a\n").is_err());
    assert!(parse("# escape=`\n# escape=\\\nFROM a\n").is_err());
}

#[test]
fn env_and_label_forms() {
    assert_eq!(
        one("ENV A B C"),
        Instruction::Env(vec![("A".into(), "B C".into())])
    );
    assert_eq!(
        one(r#"ENV A=1 B="two words" C=a\ b"#),
        Instruction::Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "\"two words\"".into()),
            ("C".into(), "a\\ b".into())
        ])
    );
    assert_eq!(
        one(r#"LABEL "com.x"="y" v=1"#),
        Instruction::Label(vec![
            ("\"com.x\"".into(), "\"y\"".into()),
            ("v".into(), "1".into())
        ])
    );
    assert!(parse("FROM a\nENV A=1 B\n").is_err());
    assert!(parse("FROM a\nENV A\n").is_err());
    assert!(parse("FROM a\nENV =x\n").is_err());
}

#[test]
fn args_and_simple_instructions() {
    assert_eq!(
        one("ARG A B=2"),
        Instruction::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            }
        ])
    );
    assert_eq!(
        one("EXPOSE 80 443/udp"),
        Instruction::Expose(vec!["80".into(), "443/udp".into()])
    );
    assert_eq!(one("USER app:app"), Instruction::User("app:app".into()));
    assert_eq!(one("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
    assert_eq!(
        one("VOLUME /a /b"),
        Instruction::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(
        one(r#"VOLUME ["/data"]"#),
        Instruction::Volume(vec!["/data".into()])
    );
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Instruction::StopSignal("SIGTERM".into())
    );
    assert_eq!(
        one("MAINTAINER me <me@x>"),
        Instruction::Maintainer("me <me@x>".into())
    );
    assert_eq!(
        one(r#"SHELL ["/bin/bash", "-c"]"#),
        Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    assert_eq!(
        one("ENTRYPOINT [\"/app\"]"),
        Instruction::Entrypoint(CommandLine::Exec(vec!["/app".into()]))
    );
    assert_eq!(
        one("cmd echo"),
        Instruction::Cmd(CommandLine::Shell("echo".into()))
    );
    assert!(parse("FROM a\nSHELL /bin/sh\n").is_err());
    assert!(parse("FROM a\nUSER\n").is_err());
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(HealthcheckInstr::None)
    );
    assert_eq!(
        one("HEALTHCHECK --interval=5s --timeout=1m30s --start-period=500ms --retries=3 CMD curl -f http://x/"),
        Instruction::Healthcheck(HealthcheckInstr::Cmd {
            test: CommandLine::Shell("curl -f http://x/".into()),
            interval: Some(5_000_000_000),
            timeout: Some(90_000_000_000),
            start_period: Some(500_000_000),
            start_interval: None,
            retries: Some(3)
        })
    );
    let Instruction::Healthcheck(HealthcheckInstr::Cmd { test, .. }) =
        one(r#"HEALTHCHECK CMD ["true"]"#)
    else {
        panic!()
    };
    assert_eq!(test, CommandLine::Exec(vec!["true".into()]));
    assert!(parse("FROM a\nHEALTHCHECK --interval=5x CMD true\n").is_err());
    assert!(parse("FROM a\nHEALTHCHECK --retries=-1 CMD true\n").is_err());
    assert!(parse("FROM a\nHEALTHCHECK NONE x\n").is_err());
    assert!(parse("FROM a\nHEALTHCHECK CMD\n").is_err());
    assert!(parse("FROM a\nHEALTHCHECK FOO\n").is_err());
}

#[test]
fn onbuild() {
    let Instruction::OnBuild(text, inner) = one("ONBUILD RUN echo hi") else {
        panic!()
    };
    assert_eq!(text, "RUN echo hi");
    assert!(matches!(*inner, Instruction::Run(_)));
    assert!(parse("FROM a\nONBUILD FROM b\n").is_err());
    assert!(parse("FROM a\nONBUILD ONBUILD RUN x\n").is_err());
    assert!(matches!(
        parse_line("COPY a b", '\\'),
        Ok(Instruction::Copy(_))
    ));
}

#[test]
fn copy_and_add() {
    let Instruction::Copy(c) = one("COPY --chown=app:1 --chmod=755 --from=build --link a b* /dst/")
    else {
        panic!()
    };
    assert_eq!(c.sources, vec!["a", "b*"]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(
        (
            c.chown.as_deref(),
            c.chmod.as_deref(),
            c.from.as_deref(),
            c.link
        ),
        (Some("app:1"), Some("755"), Some("build"), true)
    );
    let Instruction::Add(a) = one(r#"ADD ["a b", "/x y/"]"#) else {
        panic!()
    };
    assert_eq!(
        (a.sources, a.dest),
        (vec!["a b".to_string()], "/x y/".to_string())
    );
    assert!(parse("FROM a\nCOPY onlyone\n").is_err());
    assert!(parse("FROM a\nADD --from=x a b\n").is_err());
    assert!(parse("FROM a\nCOPY --bogus a b\n").is_err());
}

#[test]
fn heredocs() {
    let df = parse("FROM a\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-\"A\" <<B /x/\n\thello $X\n\tA\nworld\nB\nRUN cat <<X > f\nline\nX\nCMD done\n").unwrap();
    let ins = &df.stages[0].instructions;
    let Instruction::Run(r) = &ins[0].instruction else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("echo one\necho two\n".into()));
    let Instruction::Copy(c) = &ins[1].instruction else {
        panic!()
    };
    assert_eq!(c.sources, vec!["<<-\"A\"", "<<B"]);
    assert_eq!(
        c.heredocs,
        vec![
            Heredoc {
                name: "A".into(),
                content: "hello $X\n".into(),
                expand: false
            },
            Heredoc {
                name: "B".into(),
                content: "world\n".into(),
                expand: true
            }
        ]
    );
    let Instruction::Run(r) = &ins[2].instruction else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("cat <<X > f\nline\nX".into()));
    assert_eq!(ins[3].line, 14);
    assert!(matches!(
        parse("FROM a\nRUN <<EOF\nnever closed\n"),
        Err(ParseError::Syntax { line: 2, .. })
    ));
    // Here-strings are not heredocs.
    let Instruction::Run(r) = one("RUN cat <<<word") else {
        panic!()
    };
    assert!(r.heredocs.is_empty());
}

#[test]
fn expansion_forms() {
    let e = env(&[("A", "x"), ("E", ""), ("SP", "a  b")]);
    let w = |s: &str| expand_word(s, '\\', &e).unwrap();
    assert_eq!(w("$A"), "x");
    assert_eq!(w("${A}y"), "xy");
    assert_eq!(w("$Ay"), "");
    assert_eq!(w("${U:-def}"), "def");
    assert_eq!(w("${E:-def}"), "def");
    assert_eq!(w("${E-def}"), "");
    assert_eq!(w("${U-def}"), "def");
    assert_eq!(w("${A:+set}"), "set");
    assert_eq!(w("${E:+set}"), "");
    assert_eq!(w("${E+set}"), "set");
    assert_eq!(w("${U+set}"), "");
    assert_eq!(w("${U:-${A}2}"), "x2");
    assert_eq!(w("'$A'"), "$A");
    assert_eq!(w("\"$A \\$A \\\" \\n\""), "x $A \" \\n");
    assert_eq!(w("\\$A"), "$A");
    assert_eq!(w("a\\ b"), "a b");
    assert_eq!(w("$"), "$");
    assert_eq!(w("100%$"), "100%$");
    assert!(matches!(
        expand_word("${U:?needed}", '\\', &e),
        Err(ExpandError::Required { .. })
    ));
    assert_eq!(expand_word("${E?x}", '\\', &e).unwrap(), "");
    assert!(expand_word("'open", '\\', &e).is_err());
    assert!(expand_word("\"open", '\\', &e).is_err());
    assert!(expand_word("${A", '\\', &e).is_err());
    assert!(expand_word("${A%x}", '\\', &e).is_err());
    assert!(expand_word("${}", '\\', &e).is_err());
    assert_eq!(expand_word("`$A", '`', &e).unwrap(), "$A");
    let ws = |s: &str| expand_words(s, '\\', &e).unwrap();
    assert_eq!(ws("a \"b c\"  $SP"), vec!["a", "b c", "a", "b"]);
    assert_eq!(ws("\"$SP\""), vec!["a  b"]);
    assert_eq!(ws(""), Vec::<String>::new());
}

#[test]
fn durations() {
    assert_eq!(duration_nanos("1h2m3s"), Some(3_723_000_000_000));
    assert_eq!(duration_nanos("1.5s"), Some(1_500_000_000));
    assert_eq!(duration_nanos("10"), None);
    assert_eq!(duration_nanos("s"), None);
}

#[test]
fn crlf_and_bom() {
    let df = parse("\u{feff}FROM a\r\nRUN x \\\r\n y\r\n").unwrap();
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Run(RunInstr {
            command: CommandLine::Shell("x  y".into()),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        })
    );
}
