# Consul server for deploy/compose: UI with the Prometheus metrics provider, Connect CA, the protocol of each service.
ui_config {
  enabled          = true
  metrics_provider = "prometheus"
  metrics_proxy {
    base_url = "http://prometheus:9090"
  }
  dashboard_url_templates {
    service = "http://localhost:3000/d/meshlet/meshlet?var-service={{Service.Name}}"
  }
}
connect {
  enabled = true
}
config_entries {
  bootstrap = [
    { kind = "proxy-defaults", name = "global", config { protocol = "http" } },
    { kind = "service-defaults", name = "user-service", protocol = "http" },
    { kind = "service-defaults", name = "question-service", protocol = "http" },
    { kind = "service-defaults", name = "api-gateway", protocol = "http" },
  ]
}
