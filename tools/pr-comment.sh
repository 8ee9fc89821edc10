#!/usr/bin/env bash
# Create or update the ephemeral-stack comment of a pull request (used by .github/workflows/ephemeral.yml):
#   tools/pr-comment.sh <pr number> <markdown file> [--only-update]
# The comment is found by the HTML marker on the file's first line among the comments of the workflow's own bot
# (anyone may post a comment that starts with the marker), so a PR keeps one comment that later runs edit instead of
# a new one per push. --only-update never creates one (a PR that never had a stack).
# Needs GH_TOKEN and GITHUB_REPOSITORY (both set in GitHub Actions).
set -euo pipefail
pr="${1:?usage: tools/pr-comment.sh <pr number> <markdown file> [--only-update]}"
body_file="${2:?usage: tools/pr-comment.sh <pr number> <markdown file> [--only-update]}"
mode="${3:-}"
marker="$(head -n 1 "$body_file")"
if [[ "$marker" != "<!--"*"-->" ]]; then
    echo "error: $body_file must start with an HTML comment marker line" >&2
    exit 2
fi
ids="$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$pr/comments" \
    --jq ".[] | select(.user.login == \"github-actions[bot]\" and (.body | startswith(\"$marker\"))) | .id")"
id="${ids%%$'\n'*}"
if [[ -n "$id" ]]; then
    gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$id" -F "body=@$body_file" >/dev/null
elif [[ "$mode" != "--only-update" ]]; then
    gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$pr/comments" -F "body=@$body_file" >/dev/null
fi
