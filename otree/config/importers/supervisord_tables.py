"""What supervisord's options and sections become: the options otree takes, and for those
it has no equivalent for, the reason (the comment ``otree import`` writes)."""

from __future__ import annotations

SUPERVISORD_DEFAULTS = {"startsecs": 1, "stopwaitsecs": 10, "maxbytes": 50 * 1024**2, "backups": 10}

#: [program:x] options otree takes (the rest of supervisord's have a reason in NO_EQUIVALENT)
PROGRAM_KEYS = {
    "command",
    "process_name",
    "numprocs",
    "numprocs_start",
    "priority",
    "autostart",
    "autorestart",
    "startsecs",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "user",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "logfile",
    "logfile_maxbytes",
    "logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "environment",
    "directory",
    "umask",
}

NO_EQUIVALENT = {
    "startretries": (
        "otree counts every restart against its supervisor's intensity/period (see the root),"
        " not a program's failed starts"
    ),
    "stopasgroup": "otree always sends the stop signal to the service's whole process group",
    "killasgroup": "otree always sends SIGKILL to the service's whole process group",
    "stdout_capture_maxbytes": "otree has no process communication events",
    "stderr_capture_maxbytes": "otree has no process communication events",
    "stdout_events_enabled": "otree run --events F writes every supervision event as a JSON line",
    "stderr_events_enabled": "otree run --events F writes every supervision event as a JSON line",
    "stdout_syslog": "otree writes output to its console (journald under systemd) and log files",
    "stderr_syslog": "otree writes output to its console (journald under systemd) and log files",
    "serverurl": "a service talks to otree with the otree command (its socket is found by itself)",
}

SECTION_REASONS = {
    "supervisord": None,  # handled option by option
    "supervisorctl": "otree's client is the otree command: otree status, start, stop, logs ...",
    "unix_http_server": "otree's control socket is made by otree run (0600, --socket P)",
    "inet_http_server": "otree has no network control port; its socket is local (--socket P)",
    "rpcinterface": "otree's control protocol is JSON lines on its socket, not XML-RPC",
    "ctlplugin": "otree's client has no plugins",
    "eventlistener": (
        "otree has no event listener protocol: otree run --events F writes every supervision"
        " event as a JSON line for a program to follow"
    ),
    "fcgi-program": "otree does not create sockets for its services; run the program as a service",
}

#: [supervisord] options that are limits of every program: supervisord raises its own soft
#: limit to them (and children inherit it); otree sets them per service, soft = hard
LIMITS = {"minfds": "nofile", "minprocs": "nproc"}

SUPERVISORD_REASONS = {
    "nodaemon": "otree run always runs in the foreground",
    "environment": "",  # merged below each program's environment
    "user": "otree runs as the user who starts it; each service can have its own user",
    "directory": "a service inherits otree's working directory unless it has cwd",
    "logfile": "otree writes its own lines to stderr (the console); --events F for events",
    "pidfile": "otree run keeps its pid and lock next to its socket",
    "childlogdir": "use otree run --log-dir D for one log file per service",
    "logfile_maxbytes": "otree writes its own lines to stderr (the console)",
    "logfile_backups": "otree writes its own lines to stderr (the console)",
    "loglevel": "otree writes all its own lines to stderr (the console)",
    "identifier": "otree is found by its socket (--socket P)",
}
