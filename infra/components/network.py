"""The VPC: public subnets only for the load balancer (and NAT), private ones for the rest.

Three tiers per availability zone: public (ALB, NAT), app (Lambdas, MLflow, ECS tasks; egress
through the NAT) and data (RDS; no route out at all). AWS APIs are reached through VPC endpoints
so that traffic stays off the NAT (S3 through a free gateway endpoint); the NAT exists for
Binance. One NAT gateway by default: about 33 USD a month plus 0.045 USD per GB, and the app
subnets of the other zone lose egress if its zone fails (set natGateways to azCount to avoid it).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

SERVICE_PORT = 3000  # BentoML
MONITORING_PORT = 8501  # Streamlit
MLFLOW_PORT = 5000
POSTGRES_PORT = 5432
HTTPS = 443
ANYWHERE = "0.0.0.0/0"

# Who may talk to whom: (from, to, port). Every other path is closed. The load balancer's
# listeners are the only ingress from outside the VPC (see Network._firewall).
TRAFFIC = (
    ("alb", "service", SERVICE_PORT),
    ("alb", "monitoring", MONITORING_PORT),
    ("service", "mlflow", MLFLOW_PORT),
    ("monitoring", "mlflow", MLFLOW_PORT),
    ("lambda", "database", POSTGRES_PORT),
    ("mlflow", "database", POSTGRES_PORT),
    ("service", "database", POSTGRES_PORT),
    ("monitoring", "database", POSTGRES_PORT),
    ("training", "database", POSTGRES_PORT),
    ("training", "mlflow", MLFLOW_PORT),
)
# Tiers that call out over HTTPS: Binance through the NAT, AWS APIs, package indexes at boot.
HTTPS_OUT = ("lambda", "mlflow", "service", "monitoring", "training")
SECURITY_GROUPS = ("alb", "lambda", "mlflow", "service", "monitoring", "training", "database")

# Interface endpoints: what the Lambdas, MLflow and the tasks call without the NAT.
INTERFACE_ENDPOINTS = (
    "secretsmanager",  # database password
    "ecr.api",  # image pulls: authorisation and manifests
    "ecr.dkr",
    "logs",  # CloudWatch Logs from Lambdas and tasks
    "ssm",  # Session Manager to the MLflow instance
    "ssmmessages",
    "ec2messages",
    "events",  # KlinesIngested from the ingest Lambda
)


@dataclass(frozen=True)
class NetworkArgs:
    name: str
    region: str
    vpc_cidr: str
    az_count: int
    nat_gateways: int
    interface_endpoints: bool
    # Who may reach the load balancer; empty: nobody (until the deploy opens it to itself).
    ingress_cidrs: tuple[str, ...] = ()
    https: bool = False
    # The load balancer signs users in to the monitoring page: it must reach the identity
    # provider's token and user-info endpoints over HTTPS.
    alb_reaches_identity_provider: bool = False


def subnet_cidrs(vpc_cidr: str, az_count: int) -> dict[str, list[str]]:
    """/24s per tier and zone: public from .0, app from .16, data from .32 (room to grow)."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = list(network.subnets(new_prefix=24))
    return {
        tier: [str(blocks[offset + i]) for i in range(az_count)]
        for tier, offset in (("public", 0), ("app", 16), ("data", 32))
    }


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes, NAT and endpoints; outputs the ids the other components need."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    app_subnet_ids: list[pulumi.Output[str]]
    data_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Network", name, None, opts)
        child = ResourceOptions(parent=self)
        self.vpc_cidr = args.vpc_cidr
        zones = aws.get_availability_zones_output(state="available").names
        cidrs = subnet_cidrs(args.vpc_cidr, args.az_count)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,  # interface endpoints' private DNS needs both
            enable_dns_support=True,
            tags={"Name": args.name},
            opts=child,
        )
        self.vpc_id = vpc.id
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": args.name}, opts=child
        )

        def subnets(tier: str) -> list[aws.ec2.Subnet]:
            return [
                aws.ec2.Subnet(
                    f"{name}-{tier}-{i}",
                    vpc_id=vpc.id,
                    cidr_block=cidr,
                    availability_zone=zones[i],
                    map_public_ip_on_launch=False,  # nothing gets a public IP but the ALB/NAT
                    tags={"Name": f"{args.name}-{tier}-{i}", "tier": tier},
                    opts=child,
                )
                for i, cidr in enumerate(cidrs[tier])
            ]

        public = subnets("public")
        app = subnets("app")
        data = subnets("data")

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags={"Name": f"{args.name}-public"}, opts=child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        for i, subnet in enumerate(public):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
            )

        nats = []
        for i in range(args.nat_gateways):
            eip = aws.ec2.Eip(
                f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{args.name}-nat-{i}"}, opts=child
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public[i].id,
                    tags={"Name": f"{args.name}-nat-{i}"},
                    opts=ResourceOptions(parent=self, depends_on=[igw]),
                )
            )

        app_rts = []
        for i, subnet in enumerate(app):
            rt = aws.ec2.RouteTable(
                f"{name}-app-rt-{i}", vpc_id=vpc.id, tags={"Name": f"{args.name}-app-{i}"},
                opts=child,
            )  # fmt: skip
            aws.ec2.Route(
                f"{name}-app-default-{i}",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[i % len(nats)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-app-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            app_rts.append(rt)

        # The data tier has no default route: the database needs no way out.
        data_rt = aws.ec2.RouteTable(
            f"{name}-data-rt", vpc_id=vpc.id, tags={"Name": f"{args.name}-data"}, opts=child
        )
        for i, subnet in enumerate(data):
            aws.ec2.RouteTableAssociation(
                f"{name}-data-{i}", subnet_id=subnet.id, route_table_id=data_rt.id, opts=child
            )

        # S3 through a gateway endpoint: free, and Lambda zips/MLflow artifacts skip the NAT.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in app_rts],
            tags={"Name": f"{args.name}-s3"},
            opts=child,
        )

        self.endpoint_security_group_id: pulumi.Output[str] | None = None
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints",
                vpc_id=vpc.id,
                description="VPC interface endpoints: HTTPS from inside the VPC",
                tags={"Name": f"{args.name}-endpoints"},
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-endpoints-https",
                security_group_id=endpoint_sg.id,
                description="HTTPS from the VPC",
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4=args.vpc_cidr,
                opts=child,
            )
            self.endpoint_security_group_id = endpoint_sg.id
            for service in INTERFACE_ENDPOINTS:
                aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}",
                    vpc_id=vpc.id,
                    service_name=f"com.amazonaws.{args.region}.{service}",
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=[s.id for s in app],
                    security_group_ids=[endpoint_sg.id],
                    tags={"Name": f"{args.name}-{service}"},
                    opts=child,
                )

        self.security_group_ids = self._firewall(name, args, vpc)
        self.alb_security_group_id = self.security_group_ids["alb"]
        self.public_subnet_ids = [s.id for s in public]
        self.app_subnet_ids = [s.id for s in app]
        self.data_subnet_ids = [s.id for s in data]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "app_subnet_ids": self.app_subnet_ids,
                "data_subnet_ids": self.data_subnet_ids,
                "security_group_ids": self.security_group_ids,
                "alb_security_group_id": self.alb_security_group_id,
            }
        )

    def _firewall(self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc) -> dict[str, pulumi.Output]:
        """One security group per tier, with exactly the rules in TRAFFIC and HTTPS_OUT."""
        child = ResourceOptions(parent=self)
        groups = {
            tier: aws.ec2.SecurityGroup(
                f"{name}-{tier}",
                vpc_id=vpc.id,
                description=f"pricebot {tier}",
                tags={"Name": f"{args.name}-{tier}"},
                opts=child,
            )
            for tier in SECURITY_GROUPS
        }
        for port in (80, HTTPS) if args.https else (80,):
            for i, cidr in enumerate(args.ingress_cidrs):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-in-{port}-{i}",
                    security_group_id=groups["alb"].id,
                    description=f"clients to the load balancer on {port}",
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr,
                    opts=child,
                )
        for source, target, port in TRAFFIC:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{target}-from-{source}",
                security_group_id=groups[target].id,
                description=f"{source} to {target}",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=groups[source].id,
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{source}-to-{target}",
                security_group_id=groups[source].id,
                description=f"{source} to {target}",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=groups[target].id,
                opts=child,
            )
        if args.alb_reaches_identity_provider:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-alb-identity-provider",
                security_group_id=groups["alb"].id,
                description="the load balancer's sign-in: the identity provider's endpoints",
                ip_protocol="tcp",
                from_port=HTTPS,
                to_port=HTTPS,
                cidr_ipv4=ANYWHERE,
                opts=child,
            )
        for tier in HTTPS_OUT:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{tier}-https-out",
                security_group_id=groups[tier].id,
                description="HTTPS out: AWS endpoints, NAT to Binance and package indexes",
                ip_protocol="tcp",
                from_port=HTTPS,
                to_port=HTTPS,
                cidr_ipv4=ANYWHERE,
                opts=child,
            )
        return {tier: group.id for tier, group in groups.items()}
