# One allocation per device: a batch job of 40, the allocation index names
# the device.  The project comes as an archive (artifact); the sink URL from
# Nomad variables (nomad var put nomad/jobs/orchlua-soak sink_url=...).
job "orchlua-soak" {
  type = "batch"

  group "devices" {
    count = 40

    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "orchlua" {
      driver = "exec"

      artifact {
        source      = "https://files.example.com/orchlua-project.tar.gz"
        destination = "local/project"
      }

      config {
        command = "/usr/local/bin/orchlua"
        args = ["run", "soak", "--config", "local/project/.orchlua",
                "--report", "${NOMAD_ALLOC_DIR}/data/soak.jsonl", "--sink", "${SINK_URL}"]
      }

      env {
        ORCHLUA_LABEL_DEVICE       = "dev-${NOMAD_ALLOC_INDEX}"
        ORCHLUA_PARAM_device       = "dev-${NOMAD_ALLOC_INDEX}"
        ORCHLUA_PARAM_device_index = "${NOMAD_ALLOC_INDEX}"
        ORCHLUA_LABEL_JOB          = "${NOMAD_JOB_NAME}"
      }

      template {
        destination = "secrets/sink.env"
        env         = true
        data        = "SINK_URL={{ with nomadVar \"nomad/jobs/orchlua-soak\" }}{{ .sink_url }}{{ end }}"
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
