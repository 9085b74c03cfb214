# The original's environment script, kept for its operators' habit:
#     source /usr/local/dynamo/etc/profile.d/init.sh
# Installed there by the steps of systemd/README.md.  The commands are linked into
# /usr/local/bin and find the service's socket (/run/dynamo/dynamod.sock) by
# themselves: this only puts the environment's own directory on PATH, for a
# shell whose PATH lacks /usr/local/bin.
case ":$PATH:" in
    *:/opt/dynamo/bin:*) ;;
    *) PATH="$PATH:/opt/dynamo/bin"; export PATH ;;
esac
