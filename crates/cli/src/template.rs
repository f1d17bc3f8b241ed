//! A small subset of Go's text/template, enough for docker's `--format` flags:
//! `{{.Field.Sub}}`, `{{.}}`, `{{json .X}}`, `{{index .Labels "k"}}`, `{{join .X ","}}`,
//! `upper`/`lower`/`title`/`len`/`split`/`truncate`/`println`, pipelines with `|`,
//! `{{range ...}}`, `{{if ...}}`/`{{else}}`/`{{end}}`, and `{{-`/`-}}` trimming.

use serde_json::Value;

/// Errors from parsing or running a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("template parsing error: {0}")]
    Parse(String),
    /// The template failed while running.
    #[error("template: executing: {0}")]
    Exec(String),
}

type Result<T> = std::result::Result<T, TemplateError>;

#[derive(Debug, Clone)]
enum Arg {
    Dot(Vec<String>),
    Str(String),
    Num(f64),
    Func(String),
}

type Pipeline = Vec<Vec<Arg>>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    If(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_owned();
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Parse("unclosed action".into()))?;
        let mut inner = &after[..end];
        if let Some(s) = inner.strip_prefix('-') {
            text = text.trim_end().to_owned();
            inner = s;
        }
        let mut trim_next = false;
        if let Some(s) = inner.strip_suffix('-') {
            trim_next = true;
            inner = s;
        }
        toks.push(Tok::Text(text));
        toks.push(Tok::Action(inner.trim().to_owned()));
        rest = &after[end + 2..];
        if trim_next {
            rest = rest.trim_start();
        }
    }
    toks.push(Tok::Text(rest.to_owned()));
    Ok(toks)
}

fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut w = String::from('"');
            loop {
                match chars.next() {
                    None => {
                        return Err(TemplateError::Parse(format!(
                            "unterminated string in {s:?}"
                        )))
                    }
                    Some(q) if q == c => break,
                    Some('\\') if c == '"' => match chars.next() {
                        Some('n') => w.push('\n'),
                        Some('t') => w.push('\t'),
                        Some(o) => w.push(o),
                        None => return Err(TemplateError::Parse("bad escape".into())),
                    },
                    Some(o) => w.push(o),
                }
            }
            out.push(w);
        } else if c == '|' {
            chars.next();
            out.push("|".into());
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn parse_pipeline(s: &str) -> Result<Pipeline> {
    let mut pipe = vec![Vec::new()];
    for w in words(s)? {
        if w == "|" {
            pipe.push(Vec::new());
            continue;
        }
        let arg = if let Some(lit) = w.strip_prefix('"') {
            Arg::Str(lit.to_owned())
        } else if w == "." {
            Arg::Dot(Vec::new())
        } else if let Some(path) = w.strip_prefix('.') {
            Arg::Dot(path.split('.').map(str::to_owned).collect())
        } else if let Ok(n) = w.parse::<f64>() {
            Arg::Num(n)
        } else {
            Arg::Func(w)
        };
        if let Some(last) = pipe.last_mut() {
            last.push(arg);
        }
    }
    if pipe.iter().any(Vec::is_empty) {
        return Err(TemplateError::Parse(format!("empty command in {s:?}")));
    }
    Ok(pipe)
}

/// Parses nodes until `{{end}}`/`{{else}}` (returned as the terminator) or the end of input.
fn parse_nodes(
    toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>,
) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some(t) = toks.next() {
        match t {
            Tok::Text(s) => {
                if !s.is_empty() {
                    nodes.push(Node::Text(s));
                }
            }
            Tok::Action(a) => {
                if a == "end" || a == "else" {
                    return Ok((nodes, Some(a)));
                }
                let kw = a.split_whitespace().next().unwrap_or("");
                if kw == "range" || kw == "if" {
                    let pipe = parse_pipeline(a[kw.len()..].trim())?;
                    let (body, term) = parse_nodes(toks)?;
                    let els = match term.as_deref() {
                        Some("else") => {
                            let (e, t2) = parse_nodes(toks)?;
                            if t2.as_deref() != Some("end") {
                                return Err(TemplateError::Parse("missing {{end}}".into()));
                            }
                            e
                        }
                        Some("end") => Vec::new(),
                        _ => return Err(TemplateError::Parse("missing {{end}}".into())),
                    };
                    nodes.push(if kw == "range" {
                        Node::Range(pipe, body, els)
                    } else {
                        Node::If(pipe, body, els)
                    });
                } else if a.is_empty() || a.starts_with("/*") {
                    continue;
                } else {
                    nodes.push(Node::Action(parse_pipeline(&a)?));
                }
            }
        }
    }
    Ok((nodes, None))
}

impl Template {
    /// Parses template text.
    pub fn parse(src: &str) -> Result<Self> {
        let mut toks = lex(src)?.into_iter().peekable();
        let (nodes, term) = parse_nodes(&mut toks)?;
        if let Some(t) = term {
            return Err(TemplateError::Parse(format!("unexpected {{{{{t}}}}}")));
        }
        Ok(Template { nodes })
    }

    /// Runs the template against a JSON value.
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        run(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// Renders a table header: each action becomes the header name of the first field it reads.
    pub fn render_header(&self, header: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) | Node::Range(p, _, _) | Node::If(p, _, _) => {
                    let field = p.iter().flatten().find_map(|a| match a {
                        Arg::Dot(path) if !path.is_empty() => Some(path.join(".")),
                        _ => None,
                    });
                    if let Some(f) = field {
                        out.push_str(&header(&f));
                    }
                }
            }
        }
        out
    }
}

fn run(nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&go_string(&eval_pipeline(p, dot)?)),
            Node::If(p, then, els) => {
                if truthy(&eval_pipeline(p, dot)?) {
                    run(then, dot, out)?;
                } else {
                    run(els, dot, out)?;
                }
            }
            Node::Range(p, body, els) => {
                let v = eval_pipeline(p, dot)?;
                let items: Vec<Value> = match v {
                    Value::Array(a) => a,
                    Value::Object(m) => {
                        let mut keys: Vec<_> = m.into_iter().collect();
                        keys.sort_by(|a, b| a.0.cmp(&b.0));
                        keys.into_iter().map(|(_, v)| v).collect()
                    }
                    Value::Null => Vec::new(),
                    other => {
                        return Err(TemplateError::Exec(format!(
                            "range can't iterate over {other}"
                        )))
                    }
                };
                if items.is_empty() {
                    run(els, dot, out)?;
                }
                for item in &items {
                    run(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

const MISSING: &str = "\u{0}<no value>";

fn lookup(dot: &Value, path: &[String]) -> Value {
    let mut cur = dot;
    for p in path {
        match cur.get(p.as_str()) {
            Some(v) => cur = v,
            None => return Value::String(MISSING.into()),
        }
    }
    cur.clone()
}

fn eval_pipeline(p: &Pipeline, dot: &Value) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        prev = Some(eval_cmd(cmd, dot, prev)?);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn eval_arg(a: &Arg, dot: &Value) -> Result<Value> {
    Ok(match a {
        Arg::Dot(path) => lookup(dot, path),
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Num(n) => serde_json::json!(n),
        Arg::Func(f) => return Err(TemplateError::Exec(format!("{f} is not a value"))),
    })
}

fn eval_cmd(cmd: &[Arg], dot: &Value, piped: Option<Value>) -> Result<Value> {
    let (first, rest) = cmd
        .split_first()
        .ok_or_else(|| TemplateError::Exec("empty command".into()))?;
    let Arg::Func(name) = first else {
        if !rest.is_empty() || piped.is_some() {
            return Err(TemplateError::Exec(
                "can't give argument to non-function".into(),
            ));
        }
        return eval_arg(first, dot);
    };
    let mut args = rest
        .iter()
        .map(|a| eval_arg(a, dot))
        .collect::<Result<Vec<_>>>()?;
    if let Some(p) = piped {
        args.push(p);
    }
    let arg = |i: usize| -> Result<&Value> {
        args.get(i)
            .ok_or_else(|| TemplateError::Exec(format!("wrong number of args for {name}")))
    };
    let s = |i: usize| -> Result<String> { arg(i).map(go_string) };
    Ok(match name.as_str() {
        "json" => Value::String(go_json(&clean(arg(0)?))),
        "upper" => Value::String(s(0)?.to_uppercase()),
        "lower" => Value::String(s(0)?.to_lowercase()),
        "title" => {
            let t = s(0)?;
            let mut c = t.chars();
            Value::String(
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default(),
            )
        }
        "len" => serde_json::json!(match arg(0)? {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            v => go_string(v).len(),
        }),
        "join" => {
            let sep = s(1)?;
            match arg(0)? {
                Value::Array(a) => {
                    Value::String(a.iter().map(go_string).collect::<Vec<_>>().join(&sep))
                }
                v => Value::String(go_string(v)),
            }
        }
        "split" => Value::Array(
            s(0)?
                .split(s(1)?.as_str())
                .map(|p| Value::String(p.into()))
                .collect(),
        ),
        "truncate" => {
            let n = arg(1)?.as_f64().unwrap_or(0.0) as usize;
            Value::String(s(0)?.chars().take(n).collect())
        }
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(go_string).collect::<Vec<_>>().join(" ")
        )),
        "print" => Value::String(args.iter().map(go_string).collect::<String>()),
        "index" => {
            let mut cur = arg(0)?.clone();
            for k in &args[1..] {
                cur = match (&cur, k) {
                    (Value::Object(m), k) => m
                        .get(&go_string(k))
                        .cloned()
                        .unwrap_or(Value::String(MISSING.into())),
                    (Value::Array(a), Value::Number(n)) => a
                        .get(n.as_f64().unwrap_or(0.0) as usize)
                        .cloned()
                        .ok_or_else(|| TemplateError::Exec("index out of range".into()))?,
                    _ => {
                        return Err(TemplateError::Exec(format!(
                            "can't index item of type {}",
                            type_name(&cur)
                        )))
                    }
                };
            }
            cur
        }
        other => {
            return Err(TemplateError::Exec(format!(
                "function {other:?} not defined"
            )))
        }
    })
}

/// JSON like Go's `json.Marshal`: `<`, `>` and `&` escaped.
fn go_json(v: &Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn clean(v: &Value) -> Value {
    match v {
        Value::String(s) if s == MISSING => Value::Null,
        other => other.clone(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != MISSING,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Prints a value the way Go's `fmt` prints the decoded equivalent.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s == MISSING => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<_> = m.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = keys
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_and_json() {
        let v = json!({"Name": "/web", "State": {"Status": "running", "Pid": 42}, "Labels": {"a": "b"}});
        assert_eq!(
            r("{{.Name}} {{.State.Status}} {{.State.Pid}}", &v),
            "/web running 42"
        );
        assert_eq!(r("{{json .State}}", &v), r#"{"Pid":42,"Status":"running"}"#);
        assert_eq!(r("{{index .Labels \"a\"}}", &v), "b");
        assert_eq!(r("{{.Missing}}", &v), "<no value>");
        assert_eq!(r("{{.Labels}}", &v), "map[a:b]");
        assert_eq!(r("{{.Name | upper}}", &v), "/WEB");
    }

    #[test]
    fn range_and_if() {
        let v = json!({"NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}, "Env": ["A=1", "B=2"], "T": false});
        assert_eq!(
            r(
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &v
            ),
            "172.17.0.2"
        );
        assert_eq!(r("{{range .Env}}{{.}};{{end}}", &v), "A=1;B=2;");
        assert_eq!(r("{{if .T}}yes{{else}}no{{end}}", &v), "no");
        assert_eq!(r("{{join .Env \",\"}}", &v), "A=1,B=2");
        assert_eq!(r("  {{- .T -}}  x", &v), "falsex");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{range .A}}x").is_err());
        assert!(Template::parse("{{nope .A}}")
            .unwrap()
            .render(&json!({}))
            .is_err());
    }

    #[test]
    fn header_names_fields() {
        let t = Template::parse("{{.ID}}\t{{json .Names}}").unwrap();
        assert_eq!(t.render_header(&|f| f.to_uppercase()), "ID\tNAMES");
    }
}
