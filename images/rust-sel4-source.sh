#!/usr/bin/env bash
# Where cargo gets rust-sel4 for the PD build, written as environment assignments to
# OUT_ENV (one per line, for `env $(cat OUT_ENV) cargo ...`).
#
# pds/Cargo.lock pins rust-sel4 by tag and commit from github.com/seL4/rust-sel4. When
# cargo already has that commit, or GitHub answers, OUT_ENV is empty and cargo does what it
# always does. Otherwise the build falls back to a git bundle of rust-sel4 (BUNDLE): it is
# cloned into the build directory, and a git config of this build's own (passed to cargo
# through GIT_CONFIG_GLOBAL, with cargo fetching through the git CLI so that git reads it)
# redirects the GitHub URL to the clone. The user's global git configuration is included
# in that file, not changed; nothing in ~/.cargo or ~/.gitconfig is written.
#
# usage: rust-sel4-source.sh BUILD_DIR BUNDLE OUT_ENV
set -euo pipefail
build=$1 bundle=$2 out=$3
url=https://github.com/seL4/rust-sel4
lock=$(dirname "$0")/../pds/Cargo.lock
rev=$(sed -n "s|^source = \"git+$url?tag=[^#]*#\([0-9a-f]*\)\"$|\1|p" "$lock" | head -n 1)
if [ -z "$rev" ]; then
    echo "rust-sel4: no pinned commit of $url in $lock" >&2
    exit 1
fi
mkdir -p "$build"
: > "$out"

# cargo keeps fetched git repositories under $CARGO_HOME/git/db/<name>-<hash>.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for db in "$cargo_home"/git/db/rust-sel4-*; do
    if [ -d "$db" ] && git -C "$db" cat-file -e "$rev^{commit}" 2>/dev/null; then
        echo "rust-sel4: ${rev:0:12} is in cargo's git cache ($db)"
        exit 0
    fi
done

if timeout 20 git ls-remote --exit-code "$url" >/dev/null 2>&1; then
    echo "rust-sel4: fetched by cargo from $url"
    exit 0
fi

if [ ! -f "$bundle" ]; then
    echo "rust-sel4: $url cannot be reached and there is no bundle at $bundle;" \
        "the PD build needs one of the two (see ../shared/README.md)" >&2
    exit 1
fi
clone=$build/rust-sel4.git
if ! git -C "$clone" cat-file -e "$rev^{commit}" 2>/dev/null; then
    rm -rf "$clone"
    git clone --quiet --bare "$bundle" "$clone"
fi
if ! git -C "$clone" cat-file -e "$rev^{commit}" 2>/dev/null; then
    echo "rust-sel4: the bundle $bundle does not hold the pinned commit $rev" >&2
    exit 1
fi
config=$build/rust-sel4.gitconfig
{
    # The user's own global settings still apply (git ignores a missing include).
    printf '[include]\n\tpath = %s\n' "$HOME/.gitconfig"
    printf '[url "%s"]\n\tinsteadOf = %s\n' "$clone" "$url"
} > "$config"
printf 'GIT_CONFIG_GLOBAL=%s\nCARGO_NET_GIT_FETCH_WITH_CLI=true\n' "$config" > "$out"
echo "rust-sel4: $url cannot be reached; using the bundle $bundle (cloned to $clone)"
