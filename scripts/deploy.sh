#!/usr/bin/env bash
# Deploy a stage: `scripts/deploy.sh infra` (make deploy-infra) applies infra/ with Terraform; `scripts/deploy.sh
# lambdas` (make deploy) packages the API and daemon Lambdas (scripts/package_lambdas.py) and applies each app's
# Terraform. Settings: `environment`, then the override file (environment.local, or $DSS_ENVIRONMENT_LOCAL).
# Everything that is missing is reported before anything is changed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
OVERRIDE=${DSS_ENVIRONMENT_LOCAL:-environment.local}
TERRAFORM=${TERRAFORM:-terraform}
BUILD=${DSS_BUILD_DIR:-build}

die() { echo "deploy: $*" >&2; exit 2; }

what=${1:-}
[[ $what == infra || $what == lambdas ]] || die "usage: scripts/deploy.sh infra|lambdas"

# The override first: `environment` keeps values already set and derives its defaults (bucket and table names)
# from the stage the override sets.
set -a
if [[ -f $OVERRIDE ]]; then
    # shellcheck source=/dev/null
    source "$OVERRIDE"
fi
# shellcheck source=/dev/null
source environment
set +a

problems=()
command -v "$TERRAFORM" >/dev/null || problems+=("terraform (>= 1.6) is not installed: https://developer.hashicorp.com/terraform/install")
[[ -x $PY ]] || problems+=("the virtualenv is missing: run \`make setup\`")
[[ ${DSS_DEPLOYMENT_STAGE} != local ]] || problems+=("DSS_DEPLOYMENT_STAGE is \`local\`: set the stage (e.g. dev) in $OVERRIDE")
[[ ${GCP_PROJECT_NAME} != dss-local ]] || problems+=("GCP_PROJECT_NAME is the local stack's: set your GCP project in $OVERRIDE")
[[ -n ${DSS_TERRAFORM_STATE_BUCKET} ]] || problems+=("DSS_TERRAFORM_STATE_BUCKET is empty: name the S3 bucket of the Terraform state in $OVERRIDE")
if [[ $what == infra ]]; then
    [[ -n ${API_DOMAIN_NAME} ]] || problems+=("API_DOMAIN_NAME is empty: set the API's host name in $OVERRIDE")
    [[ -n ${DSS_ROUTE53_ZONE} ]] || problems+=("DSS_ROUTE53_ZONE is empty: name the Route53 hosted zone of API_DOMAIN_NAME in $OVERRIDE")
    [[ -n ${GOOGLE_APPLICATION_CREDENTIALS:-} || -f ${CLOUDSDK_CONFIG:-$HOME/.config/gcloud}/application_default_credentials.json ]] \
        || problems+=("no GCP credentials: set GOOGLE_APPLICATION_CREDENTIALS or run \`gcloud auth application-default login\`")
fi
if ((${#problems[@]})); then
    printf 'deploy: %s\n' "${problems[@]}" >&2
    exit 2
fi
if ! account=$("$PY" -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Account"])' 2>/dev/null); then
    die "no usable AWS credentials (set AWS_PROFILE, or the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY of the account)"
fi
echo "deploy: stage ${DSS_DEPLOYMENT_STAGE}, AWS account ${account}, region ${AWS_DEFAULT_REGION}, GCP project ${GCP_PROJECT_NAME}"

approve=()
[[ -z ${DSS_DEPLOY_AUTO_APPROVE} ]] || approve=(-auto-approve)

# terraform_init DIR STATE-NAME: the S3 backend, one state object per stage and root module.
terraform_init() {
    "$TERRAFORM" -chdir="$1" init -input=false -reconfigure \
        -backend-config="bucket=${DSS_TERRAFORM_STATE_BUCKET}" \
        -backend-config="key=dss/${DSS_DEPLOYMENT_STAGE}/$2.tfstate" \
        -backend-config="region=${DSS_TERRAFORM_STATE_REGION}" \
        -backend-config="encrypt=true" -backend-config="use_lockfile=true"
}

if [[ $what == infra ]]; then
    export TF_VAR_stage=$DSS_DEPLOYMENT_STAGE TF_VAR_aws_region=$AWS_DEFAULT_REGION
    export TF_VAR_gcp_project=$GCP_PROJECT_NAME TF_VAR_gcp_region=$GCP_DEFAULT_REGION
    export TF_VAR_s3_bucket=$DSS_S3_BUCKET TF_VAR_gs_bucket=$DSS_GS_BUCKET
    export TF_VAR_s3_checkout_bucket=$DSS_S3_CHECKOUT_BUCKET TF_VAR_gs_checkout_bucket=$DSS_GS_CHECKOUT_BUCKET
    export TF_VAR_s3_staging_bucket=$DSS_S3_STAGING_BUCKET TF_VAR_gs_staging_bucket=$DSS_GS_STAGING_BUCKET
    export TF_VAR_checkout_ttl_days=$(( (DSS_CHECKOUT_TTL_SECONDS + 86399) / 86400 ))
    export TF_VAR_async_state_table=$DSS_ASYNC_STATE_TABLE TF_VAR_collections_table=$DSS_COLLECTIONS_TABLE
    export TF_VAR_subscriptions_table=$DSS_SUBSCRIPTIONS_TABLE TF_VAR_notifications_table=$DSS_NOTIFICATIONS_TABLE
    export TF_VAR_api_domain_name=$API_DOMAIN_NAME TF_VAR_route53_zone_name=$DSS_ROUTE53_ZONE
    export TF_VAR_opensearch_instance_type=$DSS_OPENSEARCH_INSTANCE_TYPE
    export TF_VAR_opensearch_instance_count=$DSS_OPENSEARCH_INSTANCE_COUNT
    export TF_VAR_opensearch_volume_gb=$DSS_OPENSEARCH_VOLUME_GB
    terraform_init infra infra
    "$TERRAFORM" -chdir=infra apply -input=false "${approve[@]}"
    exit 0
fi

mkdir -p "$BUILD"
terraform_init infra infra
"$TERRAFORM" -chdir=infra output -json > "$BUILD/infra-outputs.json"
"$PY" scripts/package_lambdas.py --stage "$DSS_DEPLOYMENT_STAGE" --out "$BUILD/lambdas" --work "$BUILD/chalice-projects" \
    --infra-outputs "$BUILD/infra-outputs.json" --account-id "$account" --region "$AWS_DEFAULT_REGION"
for app in "$BUILD"/lambdas/*/; do
    app=$(basename "$app")
    echo "deploy: $app"
    terraform_init "$BUILD/lambdas/$app" "lambdas/$app"
    "$TERRAFORM" -chdir="$BUILD/lambdas/$app" apply -input=false "${approve[@]}"
done
