"""The pulumi-policy pack: `pulumi preview --policy-pack policy` runs infra/policies.py's rules.

Each rule becomes one mandatory stack validation policy. Resources reach the rules the way the
tests record them, except that references to other resources (``bucket``, ``securityGroupId``,
``vpcSecurityGroupIds``) become the referenced resources' URNs, and a resource's id is its own
URN: the rules can then link resources even in a preview, where ids are not known yet.
"""

from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationPolicy

from stnlp.infra.policies import RULES, Resource

SINGLE_REFERENCES = ("bucket", "securityGroupId")
LIST_REFERENCES = ("vpcSecurityGroupIds",)


def _resource(policy_resource) -> Resource:
    props = dict(policy_resource.props)
    dependencies = policy_resource.property_dependencies or {}
    for key in SINGLE_REFERENCES:
        if len(dependencies.get(key) or []) == 1:
            props[key] = dependencies[key][0].urn
    for key in LIST_REFERENCES:
        if dependencies.get(key):
            props[key] = [target.urn for target in dependencies[key]]
    return Resource(policy_resource.resource_type, policy_resource.name, props, policy_resource.urn)


def _policy(name, rule) -> StackValidationPolicy:
    def validate(args, report_violation):
        resources = [_resource(r) for r in args.resources]
        stack = args.resources[0].urn.split(":")[2] if args.resources else ""
        for violation in rule(resources, stack):
            report_violation(violation)

    return StackValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


PolicyPack(name="stnlp-safety", policies=[_policy(name, rule) for name, rule in RULES.items()])
