"""Build variables: which names a config may declare, and which values a request may set.

Request data reaches a job only as the value of a variable the config declares
(`services.<s>.build.variables`). A name that a shell, the dynamic loader, a language
runtime or Conveyor itself gives meaning to would turn such a value into code, a path
or a changed script, so none of them may be declared. docs/security.md lists them.
"""

import re

MAX_VALUE_BYTES = 4096

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Control characters (C0, DEL, C1) but tab, and lone surrogates, which no environment
# and no UTF-8 text can hold.
_BAD_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")

_SHELL = "a shell gives it meaning"
RESERVED_NAMES: dict[str, str] = {
    "BASH_ENV": "bash runs the file it names before the script",
    "ENV": "sh, and bash as sh, run the file it names before the script",
    "SHELLOPTS": "turns shell options on before the script starts",
    "BASHOPTS": "turns shell options on before the script starts",
    "PS0": _SHELL,
    "PS1": _SHELL,
    "PS2": _SHELL,
    "PS3": _SHELL,
    "PS4": "expanded before each traced command, command substitutions included",
    "PROMPT_COMMAND": "a shell runs it as a command",
    "IFS": "changes how the script's words are split",
    "CDPATH": "changes where `cd` goes",
    "GLOBIGNORE": "changes what globs match",
    "EXECIGNORE": "changes which programs the shell finds",
    "FUNCNEST": _SHELL,
    "HISTFILE": _SHELL,
    "INPUTRC": _SHELL,
    "TMOUT": "ends a shell that waits for input",
    "POSIXLY_CORRECT": "changes how the shell and the tools parse their input",
    "PATH": "decides which programs the script runs",
    "HOME": "set by Conveyor: tools read their configuration from it",
    "USER": "set by Conveyor",
    "LOGNAME": "set by Conveyor",
    "SHELL": "programs run it as a shell",
    "TMPDIR": "set by Conveyor: where programs write temporary files",
    "LANG": "changes how programs parse and print text",
    "LANGUAGE": "changes how programs parse and print text",
    "TZ": "set by Conveyor",
    "TERM": "programs load terminal descriptions by it",
    "TERMINFO": "programs load terminal descriptions from it",
    "GCONV_PATH": "the C library loads code from it",
    "GLIBC_TUNABLES": "configures the C library (and has been an exploit vector)",
    "HOSTALIASES": "the C library reads files it names",
    "LOCALDOMAIN": "changes name resolution",
    "RES_OPTIONS": "changes name resolution",
    "NLSPATH": "the C library reads files it names",
    "JAVA_TOOL_OPTIONS": "the JVM loads agents (code) it names",
    "_JAVA_OPTIONS": "the JVM loads agents (code) it names",
    "JDK_JAVA_OPTIONS": "the JVM loads agents (code) it names",
    "RUBYOPT": "Ruby loads the code it names",
    "RUBYLIB": "Ruby loads code from it",
}
RESERVED_PREFIXES: dict[str, str] = {
    "CONVEYOR_": "Conveyor's own variables",
    "BASH_": "bash's own variables (BASH_ENV, BASH_XTRACEFD, exported functions)",
    "LD_": "the dynamic loader loads code by them (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT)",
    "LC_": "change how programs parse and print text",
    "MALLOC_": "configure the C library's allocator",
    "GIT_": "git reads them, and some run commands (GIT_SSH_COMMAND, GIT_CONFIG_*)",
    "SSH_": "ssh reads them (SSH_AUTH_SOCK, SSH_ASKPASS runs a program)",
    "PYTHON": "Python loads code by them (PYTHONSTARTUP, PYTHONPATH, PYTHONHOME)",
    "PERL5": "Perl loads code by them (PERL5OPT, PERL5LIB)",
    "PERLLIB": "Perl loads code from it",
    "NODE_": "Node.js loads code by them (NODE_OPTIONS --require)",
}


def repo_variable(repo_name: str) -> str:
    """voting-app -> VOTING_APP, the prefix of its _COMMIT/_BRANCH/_PR variables."""
    return re.sub(r"[^A-Za-z0-9]", "_", repo_name).upper()


def repo_variables(repo_name: str) -> tuple[str, str, str]:
    prefix = repo_variable(repo_name)
    return f"{prefix}_COMMIT", f"{prefix}_BRANCH", f"{prefix}_PR"


def variable_name_problem(name: str) -> str | None:
    """Why `name` may not be a build variable (or a build output), or None."""
    if not _NAME.fullmatch(name):
        return "must be a shell variable name (letters, digits, '_'; not starting with a digit)"
    why = RESERVED_NAMES.get(name)
    if why is None:
        why = next((w for p, w in RESERVED_PREFIXES.items() if name.startswith(p)), None)
    if why is not None:
        return f"is reserved: {why}"
    return None


def variable_value_problem(value: str) -> str | None:
    """Why `value` may not be a build variable's value, or None: it reaches a job's
    environment, where NUL cannot exist, and its log, where a line break or an escape
    sequence would forge someone else's line."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_VALUE_BYTES:
        return f"must be at most {MAX_VALUE_BYTES} bytes of UTF-8, not {size}"
    bad = _BAD_CHAR.search(value)
    if bad is not None:
        return (
            "must not hold control characters other than tab; "
            f"found {bad.group()!r} at {bad.start()}"
        )
    return None
