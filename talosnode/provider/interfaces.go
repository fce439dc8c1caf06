package provider

import "github.com/pulumi/pulumi-go-provider/infer"

// What each resource implements, checked when the provider compiles. infer finds Check, Read,
// Update, Delete and Annotate by type assertion at run time: a method whose signature drifts from
// its interface is skipped without a word (the default Check, a Read that keeps the state, a
// schema without descriptions). pulumi-go-provider's examples carry the same lines.
var (
	_ infer.CustomResource[NodeStateArgs, NodeStateState] = (*NodeState)(nil)
	_ infer.CustomCheck[NodeStateArgs]                    = (*NodeState)(nil)
	_ infer.CustomRead[NodeStateArgs, NodeStateState]     = (*NodeState)(nil)
	_ infer.CustomUpdate[NodeStateArgs, NodeStateState]   = (*NodeState)(nil)
	_ infer.CustomDelete[NodeStateState]                  = (*NodeState)(nil)
	_ infer.Annotated                                     = (*NodeState)(nil)
	_ infer.Annotated                                     = (*NodeStateArgs)(nil)
	_ infer.Annotated                                     = (*NodeStateState)(nil)
	_ infer.Annotated                                     = (*ClientConfiguration)(nil)

	_ infer.CustomResource[RolloutArgs, RolloutState] = (*Rollout)(nil)
	_ infer.CustomCheck[RolloutArgs]                  = (*Rollout)(nil)
	_ infer.CustomRead[RolloutArgs, RolloutState]     = (*Rollout)(nil)
	_ infer.CustomUpdate[RolloutArgs, RolloutState]   = (*Rollout)(nil)
	_ infer.CustomDelete[RolloutState]                = (*Rollout)(nil)
	_ infer.Annotated                                 = (*Rollout)(nil)
	_ infer.Annotated                                 = (*RolloutArgs)(nil)
	_ infer.Annotated                                 = (*RolloutNode)(nil)
	_ infer.Annotated                                 = (*RolloutState)(nil)

	_ infer.CustomResource[KubernetesReadyArgs, KubernetesReadyState] = (*KubernetesReady)(nil)
	_ infer.CustomCheck[KubernetesReadyArgs]                          = (*KubernetesReady)(nil)
	_ infer.CustomRead[KubernetesReadyArgs, KubernetesReadyState]     = (*KubernetesReady)(nil)
	_ infer.CustomUpdate[KubernetesReadyArgs, KubernetesReadyState]   = (*KubernetesReady)(nil)
	_ infer.CustomDelete[KubernetesReadyState]                        = (*KubernetesReady)(nil)
	_ infer.Annotated                                                 = (*KubernetesReady)(nil)
	_ infer.Annotated                                                 = (*KubernetesReadyArgs)(nil)

	_ infer.CustomResource[ConfigurationApplyArgs, ConfigurationApplyState] = (*ConfigurationApply)(nil)
	_ infer.CustomCheck[ConfigurationApplyArgs]                             = (*ConfigurationApply)(nil)
	_ infer.CustomRead[ConfigurationApplyArgs, ConfigurationApplyState]     = (*ConfigurationApply)(nil)
	_ infer.CustomDelete[ConfigurationApplyState]                           = (*ConfigurationApply)(nil)
	_ infer.Annotated                                                       = (*ConfigurationApply)(nil)
	_ infer.Annotated                                                       = (*ConfigurationApplyArgs)(nil)
	_ infer.Annotated                                                       = (*ConfigurationApplyState)(nil)

	_ infer.CustomResource[EtcdRecoveryArgs, EtcdRecoveryState] = (*EtcdRecovery)(nil)
	_ infer.CustomCheck[EtcdRecoveryArgs]                       = (*EtcdRecovery)(nil)
	_ infer.CustomDiff[EtcdRecoveryArgs, EtcdRecoveryState]     = (*EtcdRecovery)(nil)
	_ infer.CustomUpdate[EtcdRecoveryArgs, EtcdRecoveryState]   = (*EtcdRecovery)(nil)
	_ infer.CustomDelete[EtcdRecoveryState]                     = (*EtcdRecovery)(nil)
	_ infer.Annotated                                           = (*EtcdRecovery)(nil)
	_ infer.Annotated                                           = (*EtcdRecoveryArgs)(nil)
	_ infer.Annotated                                           = (*EtcdRecoveryState)(nil)
)
