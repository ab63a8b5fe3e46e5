# Every ssh session request on a lab host comes through here (sshd's ForceCommand, sourced
# by root's shell, bash): it appends one line to /run/lab-sessions.log, then runs what the
# client asked for exactly as sshd would have: `$SHELL -c COMMAND` for a command or a
# subsystem (sshd hands the subsystem's program over as the command), a login shell when
# there is none. Sourced rather than run, so a session costs one extra exec, not two.
# Counting here, on the host, counts what reached the host, whatever the client believes.
#
# Line format: `exec COMMAND`, `sftp PROGRAM` or `shell`; a command is cut at 300
# characters and its newlines written as \n, so one request is always one line.
if [ -n "${SSH_ORIGINAL_COMMAND+set}" ]; then
    __lab_command=$SSH_ORIGINAL_COMMAND
    # The command must not see that it was wrapped.
    unset SSH_ORIGINAL_COMMAND
    case $__lab_command in
    */sftp-server | */sftp-server\ *) __lab_kind=sftp ;;
    *) __lab_kind=exec ;;
    esac
    __lab_line=${__lab_command:0:300}
    printf '%s %s\n' "$__lab_kind" "${__lab_line//$'\n'/\\n}" 2>/dev/null >>/run/lab-sessions.log
    exec -a "${SHELL##*/}" "$SHELL" -c "$__lab_command"
fi
printf 'shell\n' 2>/dev/null >>/run/lab-sessions.log
exec -a "-${SHELL##*/}" "$SHELL"
