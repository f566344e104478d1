/**
 * A measurement of the CloudWatch agent's `nvidia_gpu` section. The agent drops the whole
 * section when it meets a name it does not know, so only these are accepted.
 *
 * @see https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-Agent-NVIDIA-GPU.html
 */
export enum NvidiaGpuMeasurement {
  /** Percentage of time one or more kernels ran (`nvidia_smi_utilization_gpu`). */
  UTILIZATION_GPU = 'utilization_gpu',
  /** Core temperature, degrees Celsius. */
  TEMPERATURE_GPU = 'temperature_gpu',
  /** Board power draw, watts. */
  POWER_DRAW = 'power_draw',
  /** Percentage of time device memory was read or written. */
  UTILIZATION_MEMORY = 'utilization_memory',
  /** Fan speed, percent of maximum. */
  FAN_SPEED = 'fan_speed',
  /** Total memory, MB. */
  MEMORY_TOTAL = 'memory_total',
  /** Used memory, MB. */
  MEMORY_USED = 'memory_used',
  /** Free memory, MB. */
  MEMORY_FREE = 'memory_free',
  /** Current PCIe link generation. */
  PCIE_LINK_GEN_CURRENT = 'pcie_link_gen_current',
  /** Current PCIe link width. */
  PCIE_LINK_WIDTH_CURRENT = 'pcie_link_width_current',
  /** Encoder sessions. */
  ENCODER_STATS_SESSION_COUNT = 'encoder_stats_session_count',
  /** Encoder frames per second, moving average. */
  ENCODER_STATS_AVERAGE_FPS = 'encoder_stats_average_fps',
  /** Encoder latency, microseconds, moving average. */
  ENCODER_STATS_AVERAGE_LATENCY = 'encoder_stats_average_latency',
  /** Graphics clock. */
  CLOCKS_CURRENT_GRAPHICS = 'clocks_current_graphics',
  /** Streaming multiprocessor clock. */
  CLOCKS_CURRENT_SM = 'clocks_current_sm',
  /** Memory clock. */
  CLOCKS_CURRENT_MEMORY = 'clocks_current_memory',
  /** Video clock. */
  CLOCKS_CURRENT_VIDEO = 'clocks_current_video',
}
